//! Who may connect: one user with a password (SCRAM-SHA-256, the password never crosses the
//! wire), TLS from a certificate that must load, and TLS required whenever it is configured
//! unless `--allow-plaintext` says otherwise. Nothing here has an open default: without a
//! password the server does not start.

use anyhow::{Context, bail};
use async_trait::async_trait;
use datafusion_postgres::pgwire;
use pgwire::api::PgWireConnectionState;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_APPLICATION_NAME, METADATA_USER,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// PostgreSQL's default SCRAM iteration count.
const SCRAM_ITERATIONS: usize = 4096;

/// The environment variable holding the password when no `--password-file` is given.
pub(crate) const PASSWORD_ENV: &str = "QUERY_SERVE_PASSWORD";

/// The one login: its name and its SCRAM verifier (salt and salted password), computed once.
#[derive(Debug)]
pub(crate) struct Login {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Login {
    /// The login of `user` with the password read from `password_file` (its first line) or
    /// from [`PASSWORD_ENV`].
    pub(crate) fn load(user: &str, password_file: Option<&Path>) -> anyhow::Result<Self> {
        let password = match password_file {
            Some(path) => service::secrets::read_secret(path, "--password-file")?
                .expose()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            None => std::env::var(PASSWORD_ENV).unwrap_or_default(),
        };
        if password.is_empty() {
            bail!(
                "query serve needs a password for user {user:?}: --password-file FILE or {PASSWORD_ENV} \
                 (it never serves without authentication)"
            );
        }
        Ok(Self::new(user, &password))
    }

    pub(crate) fn new(user: &str, password: &str) -> Self {
        let salt = random_bytes();
        Self {
            user: user.to_owned(),
            salted: gen_salted_password(password, &salt, SCRAM_ITERATIONS),
            salt,
        }
    }
}

fn random_bytes() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

#[async_trait]
impl AuthSource for Login {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        if login.user() == Some(self.user.as_str()) {
            return Ok(Password::new(Some(self.salt.clone()), self.salted.clone()));
        }
        // An unknown user goes through the same exchange against a password nobody knows, and
        // fails with the same error as a wrong password: the user name is not revealed.
        let salt = random_bytes();
        let unknown =
            gen_salted_password(&uuid::Uuid::new_v4().to_string(), &salt, SCRAM_ITERATIONS);
        Ok(Password::new(Some(salt), unknown))
    }
}

/// The TLS acceptor for the certificate chain and key in PEM files, or the reason it cannot be
/// built: a server told to use TLS never falls back to plaintext.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<(TlsAcceptor, Vec<u8>)> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(cert).with_context(|| format!("--tls-cert {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: no certificate in it", cert.display());
    }
    service::secrets::private_file(key, "--tls-key")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: no PEM private key in it", key.display()))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not make a usable pair")?;
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}

/// SCRAM with channel binding when TLS is on (SCRAM-SHA-256-PLUS ties the login to the TLS
/// session, so a man in the middle cannot relay it).
pub(crate) fn scram(login: Arc<Login>, cert_pem: Option<&[u8]>) -> anyhow::Result<ScramAuth> {
    let mut scram = scram_without_binding(login);
    if let Some(pem) = cert_pem {
        scram.configure_certificate(pem).map_err(|error| {
            anyhow::anyhow!("the TLS certificate for SCRAM channel binding: {error}")
        })?;
    }
    Ok(scram)
}

/// SCRAM-SHA-256 alone.
pub(crate) fn scram_without_binding(login: Arc<Login>) -> ScramAuth {
    let mut scram = ScramAuth::new(login);
    scram.set_iterations(SCRAM_ITERATIONS);
    scram
}

/// What clients are told at start-up: a read-only server.
pub(crate) fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.is_superuser = false;
    parameters.default_transaction_read_only = true;
    parameters
}

/// The start-up of one connection: refused when it is over the connection cap or unencrypted
/// where TLS is required, then the SCRAM exchange; a session that starts is logged.
pub(crate) struct Startup {
    pub scram: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    pub require_tls: bool,
    /// False when the connection arrived over the cap: it gets PostgreSQL's "too many clients".
    pub admitted: bool,
    /// Set once the client is logged in (the listener drops connections slow to log in).
    pub logged_in: Arc<AtomicBool>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("require_tls", &self.require_tls)
            .field("admitted", &self.admitted)
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// The start-up of a new connection (SCRAM keeps per-connection state).
    pub(crate) fn new(
        scram: ScramAuth,
        connections: Arc<ConnectionManager>,
        session_ids: Arc<RandomPidSecretKeyGenerator>,
        require_tls: bool,
        admitted: bool,
        logged_in: Arc<AtomicBool>,
    ) -> Self {
        Self {
            scram: SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                .with_scram(scram)
                .with_connection_manager(connections)
                .with_pid_secret_key_generator(session_ids),
            require_tls,
            admitted,
            logged_in,
        }
    }
}

pub(crate) fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(_) = &message {
            if !self.admitted {
                return Err(fatal("53300", "sorry, too many clients already"));
            }
            if self.require_tls && !client.is_secure() {
                tracing::info!(peer = %client.socket_addr(), "refused an unencrypted connection");
                return Err(fatal(
                    "28000",
                    "this server accepts only TLS connections: connect with sslmode=require",
                ));
            }
        }
        self.scram.on_startup(client, message).await?;
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            && !self.logged_in.swap(true, Ordering::SeqCst)
        {
            let metadata = client.metadata();
            tracing::info!(
                session = client.pid_and_secret_key().0,
                peer = %client.socket_addr(),
                user = metadata.get(METADATA_USER).map(String::as_str).unwrap_or(""),
                application = metadata.get(METADATA_APPLICATION_NAME).map(String::as_str).unwrap_or(""),
                tls = client.is_secure(),
                "session started"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_password_file_other_users_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "a-password-of-the-server\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = format!("{:#}", Login::load("logs", Some(&file)).unwrap_err());
        assert!(error.contains("accessible by other users"), "{error}");
        assert!(!error.contains("a-password-of-the-server"), "{error}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Login::load("logs", Some(&file)).is_ok());
    }
}
