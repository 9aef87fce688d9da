//! The agent's listeners, each on its own address: the metadata API (for VMs), `/metrics` (for
//! Prometheus) and the admin API (for engineers, with a token). Bound before serving, so a port in
//! use is a clear start-up error; served together, and one failing stops them all.

use crate::admin;
use crate::config::{Config, ConnectionLimits};
use crate::fault::Faults;
use anyhow::Context;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Bound listeners, ready to serve.
#[derive(Debug)]
pub(crate) struct Listeners {
    api: TcpListener,
    limits: ConnectionLimits,
    metrics: Option<(TcpListener, PrometheusHandle)>,
    admin: Option<(TcpListener, Router)>,
}

impl Listeners {
    /// Binds every configured listener and says where each one listens.
    pub(crate) async fn bind(
        config: &Config,
        prometheus: Option<&PrometheusHandle>,
        faults: Arc<Faults>,
    ) -> anyhow::Result<Self> {
        let api = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the metadata API to {}", config.listen))?;
        tracing::info!(max_connections = config.connections.max_connections, addr = %api.local_addr()?, "metadata API listening");
        let metrics = match prometheus {
            Some(handle) => {
                let listener = TcpListener::bind(config.metrics_listen)
                    .await
                    .with_context(|| format!("binding /metrics to {}", config.metrics_listen))?;
                tracing::info!(addr = %listener.local_addr()?, "metrics listening");
                Some((listener, handle.clone()))
            }
            None => {
                tracing::info!("metrics disabled: no /metrics listener");
                None
            }
        };
        let admin = match &config.admin {
            Some(admin) => {
                let listener = TcpListener::bind(admin.listen)
                    .await
                    .with_context(|| format!("binding the admin API to {}", admin.listen))?;
                tracing::info!(addr = %listener.local_addr()?, "admin listening");
                let state = admin::AdminState {
                    token: admin.token.as_str().into(),
                    data_dir: config.data_dir.clone(),
                    faults,
                };
                Some((listener, admin::router(state)))
            }
            None => None,
        };
        Ok(Listeners {
            api,
            limits: config.connections,
            metrics,
            admin,
        })
    }

    /// Serves until `shutdown` (then lets in-flight requests finish) or until one server fails
    /// (then cancels `shutdown` so the others stop too).
    pub(crate) async fn serve(
        self,
        app: crate::http::MetadataApi,
        refresh: Arc<dyn Fn(&mut String) + Send + Sync>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<()> {
        let with_callers =
            |router: Router| router.into_make_service_with_connect_info::<SocketAddr>();
        let api = crate::http::connections::serve(self.api, app, self.limits, shutdown.clone());
        let metrics = async {
            match self.metrics {
                Some((listener, handle)) => {
                    service::exporter::serve(
                        listener,
                        handle,
                        move |page: &mut String| refresh(page),
                        shutdown.clone(),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let admin = async {
            match self.admin {
                Some((listener, router)) => {
                    axum::serve(listener, with_callers(router))
                        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                        .await
                }
                None => Ok(()),
            }
        };
        let result = tokio::try_join!(api, metrics, admin).map(|_| ());
        shutdown.cancel();
        result
    }
}
