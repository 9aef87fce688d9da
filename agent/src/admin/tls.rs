//! The admin API's TLS: rustls (TLS 1.2 and 1.3 only, the ring provider), the certificate chain
//! and key read from PEM files and read again when their contents change, so a renewed
//! certificate is served from the next handshake on without a restart. A replacement that does
//! not load (half written, a key that does not match) is logged and the last good pair kept.

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often the files are compared with those being served.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The certificate being served, swapped when its files change.
#[derive(Debug)]
pub(crate) struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
    fingerprint: AtomicU64,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ReloadingCert {
    /// Loads the pair now: a server told to use TLS never starts without it.
    fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Self> {
        service::secrets::private_file(&key, "--admin-tls-key")?;
        let fingerprint = fingerprint(&cert, &key);
        let certified = certified_key(&cert, &key)?;
        Ok(ReloadingCert {
            cert,
            key,
            current: ArcSwap::from_pointee(certified),
            fingerprint: AtomicU64::new(fingerprint),
        })
    }

    /// Loads the files again if their contents changed; says what happened.
    fn reload_if_changed(&self) {
        let now = fingerprint(&self.cert, &self.key);
        if now == self.fingerprint.load(Ordering::Relaxed) {
            return;
        }
        self.fingerprint.store(now, Ordering::Relaxed);
        let loaded = service::secrets::private_file(&self.key, "--admin-tls-key")
            .and_then(|()| certified_key(&self.cert, &self.key));
        match loaded {
            Ok(certified) => {
                self.current.store(Arc::new(certified));
                tracing::info!(cert = %self.cert.display(), "admin API certificate reloaded");
            }
            Err(error) => tracing::error!(
                cert = %self.cert.display(),
                error = %format!("{error:#}"),
                "admin API certificate changed but does not load; still serving the previous one"
            ),
        }
    }
}

/// The acceptor for `cert` and `key`, and the task that reloads them until `shutdown`.
pub(crate) fn acceptor(
    cert: PathBuf,
    key: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<TlsAcceptor> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let resolver = Arc::new(ReloadingCert::load(cert, key)?);
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => resolver.reload_if_changed(),
            }
        }
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certified_key(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<CertifiedKey> {
    let pem =
        std::fs::read(cert).with_context(|| format!("--admin-tls-cert {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "--admin-tls-cert {}: not a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!("--admin-tls-cert {}: no certificate in it", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "--admin-tls-key {}: no PEM private key in it",
            key.display()
        )
    })?;
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key_der, &provider)
        .context("the admin API's certificate and key do not make a usable pair")
}

fn fingerprint(cert: &std::path::Path, key: &std::path::Path) -> u64 {
    service::secrets::contents_fingerprint(&[cert, key])
}
