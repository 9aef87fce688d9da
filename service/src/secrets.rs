//! Secrets (passwords, tokens, private keys) as every binary handles them: read from files that
//! only their owner can read (a file other users can read or write is refused, as ssh refuses
//! such a key) or from the environment, never from argv, and never shown: [`Secret`]'s `Debug`
//! is redacted, and error messages name the file, not what is in it.

use anyhow::{Context, bail};
use std::hash::{Hash, Hasher};
use std::path::Path;

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Refuses a file that other users could read (or write): a key, a password or a token.
pub fn private_file(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("{what} {}: cannot be read", path.display()))?;
    if !metadata.is_file() {
        bail!("{what} {}: not a regular file", path.display());
    }
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} is accessible by other users (mode {:o}); refusing it: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// A private file's contents without the trailing newline, as a [`Secret`].
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<Secret> {
    private_file(path, what)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what} {}: cannot be read", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_owned();
    if value.is_empty() {
        bail!("{what} {} is empty", path.display());
    }
    Ok(Secret::new(value))
}

/// A hash of the contents of `files` (an unreadable one counts as empty): compared with an earlier
/// one, it says whether credentials were replaced and should be loaded again.
pub fn contents_fingerprint(files: &[&Path]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        std::fs::read(file).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}
