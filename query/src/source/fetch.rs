//! Agent sources (`--data https://host:port --token-file F --ca-file CA`): the hours a query
//! needs are fetched from the agent's admin API into a local cache, with a progress bar on
//! stderr, and queried there. The agent's certificate is checked against the CA file (TLS 1.2
//! or later, rustls); plain `http://` is taken only for a loopback address, as the agent only
//! serves it there.
//!
//! Per hour of the range: the rolled Parquet file when the agent has one (kept in the cache and
//! not fetched again while its size is unchanged), else the raw hourly log (the open hour, or one
//! not rolled yet), fetched every time and converted to Parquet in the cache. A converted raw
//! hour is removed as soon as its rolled file is fetched, so an hour is never counted twice.

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use logrecord::layout::{Hour, Offered};
use service::secrets::Secret;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prefix of cached Parquet converted from a raw hourly log (a snapshot, refreshed every fetch).
const FROM_RAW_PREFIX: &str = "from-raw.";

#[derive(Debug, serde::Deserialize)]
struct Listing {
    files: Vec<Offered>,
}

/// What to download for one hour.
#[derive(Debug)]
enum Wanted {
    Rolled(Offered),
    Raw(Offered),
}

/// One agent's admin API: its address, the logs token, and an HTTP client that trusts only the
/// given CA.
#[derive(Debug)]
pub(crate) struct AgentClient {
    base: url::Url,
    token: Secret,
    client: reqwest::Client,
}

impl AgentClient {
    /// The client for `base`, with the token from `token_file` (or `QUERY_TOKEN`) and, for
    /// `https://`, the CA in `ca_file`.
    pub(crate) fn new(
        base: url::Url,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let token = match token_file {
            Some(path) => service::secrets::read_secret(path, "--token-file")?,
            None => std::env::var("QUERY_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .context(
                    "agent sources need the admin API's logs token: --token-file or QUERY_TOKEN",
                )?,
        };
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(10));
        match base.scheme() {
            "https" => {
                let ca_file = ca_file.with_context(|| {
                    format!("{base}: https agent sources need --ca-file (the CA that signed the agents' admin API certificates)")
                })?;
                let pem = std::fs::read(ca_file)
                    .with_context(|| format!("--ca-file {}", ca_file.display()))?;
                let ca = reqwest::Certificate::from_pem(&pem).with_context(|| {
                    format!("--ca-file {}: not a PEM certificate", ca_file.display())
                })?;
                builder = builder
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca)
                    .min_tls_version(reqwest::tls::Version::TLS_1_2)
                    .https_only(true);
            }
            _ => {
                let loopback = match base.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
                    None => false,
                };
                if !loopback {
                    bail!(
                        "{base}: plain http sends the token and the logs in clear; use the agent's https:// address with --ca-file"
                    );
                }
            }
        }
        Ok(AgentClient {
            base,
            token,
            client: builder.build()?,
        })
    }

    /// Fetches the hours of `from..=to` into the cache; returns the cache directory of this
    /// agent (a cold-path layout `date=/hour=/*.parquet`).
    pub(crate) async fn fetch(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cache_root: &Path,
    ) -> anyhow::Result<PathBuf> {
        fetch(self, from, to, cache_root).await
    }
}

async fn fetch(
    agent: &AgentClient,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cache_root: &Path,
) -> anyhow::Result<PathBuf> {
    let base = &agent.base;
    let listing: Listing = serde_json::from_str(
        &get(agent, &join(base, "logs")?).await?.text().await?,
    )
    .with_context(|| format!("{base}: the admin API's listing is not what query expects"))?;

    let host = format!(
        "{}_{}",
        base.host_str().unwrap_or("agent"),
        base.port_or_known_default().unwrap_or(80)
    );
    let dir = cache_root.join(host.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Per hour in the range: its rolled files, else its raw log.
    let first_hour = from.duration_trunc(Duration::hours(1))?;
    let mut by_hour: BTreeMap<DateTime<Utc>, (Vec<Offered>, Option<Offered>)> = BTreeMap::new();
    for file in &listing.files {
        let Some(hour) = file.hour().map(Hour::start) else {
            continue;
        };
        if hour < first_hour || hour > to {
            continue;
        }
        let entry = by_hour.entry(hour).or_default();
        match file.kind.as_str() {
            "parquet" => entry.0.push(file.clone()),
            "raw" => entry.1 = Some(file.clone()),
            _ => {}
        }
    }
    let mut wanted = Vec::new();
    for (rolled, raw) in by_hour.into_values() {
        if !rolled.is_empty() {
            wanted.extend(rolled.into_iter().map(Wanted::Rolled));
        } else if let Some(raw) = raw {
            wanted.push(Wanted::Raw(raw));
        }
    }
    let raw_hours: Vec<String> = wanted
        .iter()
        .filter_map(|w| match w {
            Wanted::Raw(file) => file.hour().map(Hour::stamp),
            Wanted::Rolled(_) => None,
        })
        .collect();
    remove_stale_raw_snapshots(&dir, &raw_hours)?;

    let todo: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| match w {
            Wanted::Rolled(file) => {
                std::fs::metadata(dir.join(cached_name(file)))
                    .map(|m| m.len())
                    .ok()
                    != Some(file.bytes)
            }
            Wanted::Raw(_) => true,
        })
        .collect();
    let total: u64 = todo
        .iter()
        .map(|w| match w {
            Wanted::Rolled(f) | Wanted::Raw(f) => f.bytes,
        })
        .sum();
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "fetching {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(format!("{} files from {base}", todo.len()));
    for want in todo {
        match want {
            Wanted::Rolled(file) => {
                let target = dir.join(cached_name(file));
                download(agent, file, &target, &bar).await?;
                // The rolled hour replaces any earlier snapshot of its raw file.
                if let Some(hour_dir) = target.parent() {
                    for entry in std::fs::read_dir(hour_dir)?.flatten() {
                        if entry
                            .file_name()
                            .to_string_lossy()
                            .starts_with(FROM_RAW_PREFIX)
                        {
                            std::fs::remove_file(entry.path())?;
                        }
                    }
                }
            }
            Wanted::Raw(file) => {
                let temp = tempfile::NamedTempFile::new_in(&dir)?;
                download(agent, file, temp.path(), &bar).await?;
                convert_raw(temp.path(), &dir, file)?;
            }
        }
    }
    bar.finish_and_clear();
    Ok(dir)
}

/// Snapshots of raw hours this fetch does not refresh would be stale partial hours: removed.
fn remove_stale_raw_snapshots(dir: &Path, raw_hours: &[String]) -> anyhow::Result<()> {
    let keep: Vec<String> = raw_hours
        .iter()
        .map(|hour| format!("{FROM_RAW_PREFIX}{hour}.parquet"))
        .collect();
    for file in logrecord::parquet_file::list(dir) {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(FROM_RAW_PREFIX) && !keep.contains(&name) {
            std::fs::remove_file(&file)?;
        }
    }
    Ok(())
}

/// A rolled file's place in the cache: its path under the agent's `parquet/`.
fn cached_name(file: &Offered) -> PathBuf {
    let under_parquet = file
        .name
        .strip_prefix(logrecord::layout::PARQUET_DIR)
        .and_then(|rest| rest.strip_prefix('/'));
    PathBuf::from(under_parquet.unwrap_or(&file.name))
}

fn join(base: &url::Url, path: &str) -> anyhow::Result<url::Url> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    Ok(base.join(path)?)
}

async fn get(agent: &AgentClient, url: &url::Url) -> anyhow::Result<reqwest::Response> {
    let response = agent
        .client
        .get(url.clone())
        .bearer_auth(agent.token.expose())
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "{url}: cannot reach the agent's admin API: {}",
                error_chain(&error)
            )
        })?;
    match response.status().as_u16() {
        200 => Ok(response),
        _ => Err(refusal(url, response).await),
    }
}

/// The error for an answer other than the file or listing asked for.
async fn refusal(url: &url::Url, response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    if matches!(status.as_u16(), 401 | 403) {
        return anyhow::anyhow!(
            "{url}: the agent refused the token ({status}): pass its logs token with --token-file or QUERY_TOKEN"
        );
    }
    let body = response.text().await.unwrap_or_default();
    anyhow::anyhow!("{url}: {status}: {}", service::text::bounded(&body, 512))
}

/// Attempts at one file before giving up: a download cut this many times in a row is an error.
const DOWNLOAD_ATTEMPTS: u32 = 4;

/// Streams one file into `target`, resuming where a cut download stopped. The bytes so far are
/// kept beside the target in a hidden `.partial-<name>` (with the agent's `ETag` for them in
/// `.partial-<name>.etag`), so a download cut mid-file (a dropped connection, a killed `query`)
/// continues from there with `Range` and `If-Range`, in this run or the next: a file that
/// changed meanwhile comes whole, never spliced. Renamed to `target` when complete.
async fn download(
    agent: &AgentClient,
    file: &Offered,
    target: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let base = &agent.base;
    // Names are the agent's own listing entries; each path segment is percent-encoded.
    let mut url = join(base, "logs/")?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base}: not a base URL"))?
        .pop_if_empty()
        .extend(file.name.split('/'));
    let dir = logrecord::durable::directory_of(target);
    std::fs::create_dir_all(dir)?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let partial = dir.join(format!(".partial-{name}"));
    let etag_file = dir.join(format!(".partial-{name}.etag"));
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        match download_once(agent, &url, &partial, &etag_file, bar).await {
            Ok(written) => break written,
            Err(Failure::Refused(error)) => return Err(error),
            Err(Failure::Cut(error)) if attempt >= DOWNLOAD_ATTEMPTS => {
                return Err(error.context(format!(
                    "{url}: download cut {DOWNLOAD_ATTEMPTS} times; the bytes so far are kept and the next run resumes"
                )));
            }
            Err(Failure::Cut(error)) => {
                tracing::warn!(%url, attempt, error = %format!("{error:#}"), "download cut; resuming");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt)))
                    .await;
            }
        }
    };
    if file.kind == "parquet" && written != file.bytes {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(&etag_file);
        bail!(
            "{url}: got {written} bytes, the listing said {}",
            file.bytes
        );
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, target)?;
    let _ = std::fs::remove_file(&etag_file);
    Ok(())
}

/// Why one attempt at a download stopped.
enum Failure {
    /// The agent answered with an error: trying again gets the same.
    Refused(anyhow::Error),
    /// The connection failed or the body was cut: the next attempt resumes.
    Cut(anyhow::Error),
}

/// One request for the rest of a file; returns the size of the complete file in `partial`.
async fn download_once(
    agent: &AgentClient,
    url: &url::Url,
    partial: &Path,
    etag_file: &Path,
    bar: &ProgressBar,
) -> Result<u64, Failure> {
    let have = std::fs::metadata(partial).map_or(0, |m| m.len());
    let etag = std::fs::read_to_string(etag_file).ok();
    let mut request = agent
        .client
        .get(url.clone())
        .bearer_auth(agent.token.expose());
    if have > 0
        && let Some(etag) = &etag
    {
        request = request
            .header(reqwest::header::RANGE, format!("bytes={have}-"))
            .header(reqwest::header::IF_RANGE, etag.as_str());
    }
    let mut response = request.send().await.map_err(|error| {
        Failure::Cut(anyhow::anyhow!(
            "{url}: cannot reach the agent's admin API: {}",
            error_chain(&error)
        ))
    })?;
    let resumed = match response.status().as_u16() {
        206 => true,
        200 => false,
        // The kept bytes are no longer a prefix of the file (it shrank or was replaced): start
        // again from nothing.
        416 => {
            let _ = std::fs::remove_file(partial);
            let _ = std::fs::remove_file(etag_file);
            return Err(Failure::Cut(anyhow::anyhow!(
                "{url}: the kept part of the file is stale"
            )));
        }
        _ => return Err(Failure::Refused(refusal(url, response).await)),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(partial)
        .map_err(|e| Failure::Refused(e.into()))?;
    let mut written = if resumed { have } else { 0 };
    if resumed {
        bar.inc(have);
    }
    match response.headers().get(reqwest::header::ETAG) {
        Some(tag) => std::fs::write(etag_file, tag.as_bytes()),
        None => std::fs::remove_file(etag_file).or(Ok(())),
    }
    .map_err(|e| Failure::Refused(e.into()))?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                out.write_all(&chunk)
                    .map_err(|e| Failure::Refused(e.into()))?;
                written += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            Ok(None) => break,
            Err(error) => {
                return Err(Failure::Cut(anyhow::anyhow!(
                    "{url}: download cut: {}",
                    error_chain(&error)
                )));
            }
        }
    }
    Ok(written)
}

/// An error and its sources in one line: reqwest's own message says only "error sending
/// request"; the reason (a certificate not trusted, for another name, expired) is deeper.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Converts a fetched raw hourly log to Parquet in the cache (lines that are not records, such
/// as the last one of a file being written, are skipped).
fn convert_raw(raw: &Path, dir: &Path, file: &Offered) -> anyhow::Result<()> {
    let hour = file
        .hour()
        .with_context(|| format!("{}: not an hourly log name", file.name))?;
    let target = dir
        .join(hour.partition_dir())
        .join(format!("{FROM_RAW_PREFIX}{}.parquet", hour.stamp()));
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (staged, read) =
        logrecord::lines_to_parquet::stage(std::fs::File::open(raw)?, &target, threads)?;
    if read.rows == 0 {
        drop(staged);
        let _ = std::fs::remove_file(&target);
        return Ok(());
    }
    staged.publish()?;
    Ok(())
}
