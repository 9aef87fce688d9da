//! A moto S3 server (PyPI, installed by scripts/install-test-deps) on a free loopback port.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server, killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// Its `http://127.0.0.1:<port>` URL.
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> S3Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let binary = root.join(".cache/moto/bin/moto_server");
        assert!(
            binary.exists(),
            "{} is missing: run scripts/install-test-deps (it installs moto, an S3-compatible server, from PyPI)",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::eventually("moto's start", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.put(bucket, Vec::new());
    }

    /// PUT `body` at `path` (`bucket` or `bucket/key`), which must succeed. Typed as bytes: given
    /// a form-typed binary body (curl's default), moto's server hung.
    fn put(&self, path: &str, body: Vec<u8>) {
        let url = format!("{}/{path}", self.endpoint);
        let status = crate::run(async move {
            crate::http::client()
                .put(url)
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert!(status.is_success(), "PUT {path}: {status}");
    }

    /// Uploads every file under `dir` as-is (a Delta table: log and all) to `s3://bucket/prefix/`,
    /// creating the bucket; returns that URL.
    pub fn upload_dir(&self, dir: &Path, bucket: &str, prefix: &str) -> String {
        self.create_bucket(bucket);
        self.upload(dir, &crate::files_under(dir), bucket, prefix);
        format!("s3://{bucket}/{prefix}")
    }

    /// Uploads `files` (under `dir`) to `s3://bucket/prefix/` at their paths relative to `dir`:
    /// data files first, then `_delta_log/` entries, as a writer commits (a reader never meets a
    /// commit whose files are missing). Keys must be new.
    pub fn upload(&self, dir: &Path, files: &[std::path::PathBuf], bucket: &str, prefix: &str) {
        let mut files = files.to_vec();
        files.sort_by_key(|file| file.components().any(|c| c.as_os_str() == "_delta_log"));
        for file in &files {
            let key = file.strip_prefix(dir).unwrap().to_string_lossy();
            self.put(
                &format!("{bucket}/{prefix}/{key}"),
                std::fs::read(file).unwrap(),
            );
        }
    }

    /// The `AWS_*` variables that point a client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The same settings as object_store options (lower-case keys), for a client in the test.
    pub fn options(&self) -> std::collections::HashMap<String, String> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }
}
