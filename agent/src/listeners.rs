//! The agent's listeners, each on its own address: the metadata API (for VMs), `/metrics` (for
//! Prometheus) and the admin API (for engineers, with a token). Bound before serving, so a port in
//! use is a clear start-up error; served together, and one failing stops them all.

use crate::admin;
use crate::config::Config;
use crate::http::connections::ConnectionLimits;
use crate::http::fault::Faults;
use anyhow::Context;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Bound listeners, ready to serve.
#[derive(Debug)]
pub(crate) struct Listeners {
    api: TcpListener,
    limits: ConnectionLimits,
    metrics: Option<(TcpListener, PrometheusHandle)>,
    admin: Option<AdminListener>,
}

/// The admin API's listener, routes and TLS (none on loopback).
struct AdminListener {
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for AdminListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminListener")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Listeners {
    /// Binds every configured listener and says where each one listens.
    pub(crate) async fn bind(
        config: &Config,
        prometheus: Option<&PrometheusHandle>,
        faults: Arc<Faults>,
        shutdown: &CancellationToken,
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
                let tls = match &admin.tls {
                    Some((cert, key)) => Some(admin::tls_acceptor(
                        cert.clone(),
                        key.clone(),
                        shutdown.clone(),
                    )?),
                    None => None,
                };
                // `addr` last: the start-up line's contract with scripts and tests.
                tracing::info!(tls = tls.is_some(), fault_token = admin.tokens.fault.is_some(), addr = %listener.local_addr()?, "admin listening");
                let state =
                    admin::AdminState::new(admin.tokens.clone(), config.data_dir.clone(), faults);
                Some(AdminListener {
                    listener,
                    router: admin::router(state),
                    tls,
                })
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
                Some(AdminListener {
                    listener,
                    router,
                    tls,
                }) => admin::serve(listener, router, tls, shutdown.clone()).await,
                None => Ok(()),
            }
        };
        let result = tokio::try_join!(api, metrics, admin).map(|_| ());
        shutdown.cancel();
        result
    }
}
