//! Certificates for tests, made by the project's own `scripts/make-certs` (Debian's openssl).

use std::path::{Path, PathBuf};

/// A certificate `name` signed by the CA in `dir` (made there if missing), for `sans`
/// (`DNS:name`, `IP:address`; none: localhost and 127.0.0.1); returns `(cert, key)`.
pub fn certificate(dir: &Path, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let status = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/make-certs"
    ))
    .arg(dir)
    .arg(name)
    .args(sans)
    .status()
    .expect("scripts/make-certs needs openssl: run scripts/install-test-deps");
    assert!(status.success(), "scripts/make-certs {name} failed");
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}
