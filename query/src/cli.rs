//! Command line: `query [--data SRC]... [--format F] [--output FILE] [SQL]` (no SQL: the
//! interactive prompt), or the drill-down
//! `query logs --cluster C [--machine M] [--since 15m | --from T --to T] [--level warn] [--grep RE]`,
//! or its commonest templates `query patterns --cluster C [--since 1h] [same filters]`,
//! or the PostgreSQL-wire server `query serve [--listen ADDR] [--tls-cert F --tls-key F]`.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "query",
    version,
    about = "Read-only SQL over the warm store and cold-path Parquet (table `logs`)"
)]
/// The command line of `query`.
pub struct Cli {
    /// A store: a local directory of date=YYYY-MM-DD/hour=HH[/cluster=C] partitions, an object
    /// store URL `s3://bucket/prefix` (credentials, region and endpoint from the usual AWS_*
    /// variables, e.g. AWS_ENDPOINT and AWS_ALLOW_HTTP=true for MinIO), or an agent's admin API
    /// `https://host:port` (with --token-file and --ca-file; `http://` on loopback; the hours
    /// needed are fetched into --cache-dir first).
    /// Repeatable or comma-separated, all of one layout. [default: ./data/warm]
    #[arg(
        long = "data",
        env = "QUERY_DATA",
        value_delimiter = ',',
        global = true
    )]
    pub data: Vec<String>,
    /// Output format.
    #[arg(
        long,
        env = "QUERY_FORMAT",
        value_enum,
        default_value = "table",
        global = true
    )]
    pub format: Format,
    /// Write the result here instead of standard output (required for parquet).
    #[arg(long, env = "QUERY_OUTPUT", global = true)]
    pub output: Option<PathBuf>,
    /// File holding the logs token of the agents' admin API (mode 600), for agent sources; or
    /// the token in QUERY_TOKEN (never a flag: arguments are visible in `ps`).
    #[arg(long, env = "QUERY_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the agents' admin API certificates, for `https://` sources.
    #[arg(long, env = "QUERY_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// For agent sources: fetch the hours of this last period (`query logs` fetches its own range).
    #[arg(long, env = "QUERY_FETCH_SINCE", global = true, default_value = "24h", value_parser = humantime::parse_duration)]
    pub fetch_since: std::time::Duration,
    /// Where files fetched from agents are kept. [default: $XDG_CACHE_HOME/imds-query or ~/.cache/imds-query]
    #[arg(long, env = "QUERY_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Memory a statement may use, e.g. `2G`, `512M` (K, M, G, T: powers of 1024); past it,
    /// sorts and aggregations spill to disk and what cannot spill fails with a clear error.
    /// [default: a quarter of the machine's memory]
    #[arg(long, env = "QUERY_MEMORY_LIMIT", global = true, value_parser = parse_bytes)]
    pub memory_limit: Option<u64>,
    /// Run statements on this Apache DataFusion Ballista cluster (`df://host:port`, the project's
    /// `query-scheduler`) instead of in-process. Needs one --data: the warm store's Delta table,
    /// a directory the executors see at the same path, or s3:// (executors take the AWS_*
    /// variables). Before a subcommand (`query --cluster df://… logs --cluster east`): after it,
    /// `--cluster` is the drill-down's cluster of hosts.
    #[arg(long, env = "QUERY_CLUSTER")]
    pub cluster: Option<String>,
    /// One SQL statement over table `logs`. Without one: an interactive prompt with history (on
    /// a terminal), or the `;`-separated statements read from standard input.
    pub sql: Option<String>,
    #[command(subcommand)]
    /// A drill-down or the server, instead of a statement.
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// How results are printed.
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines, one object per row.
    Json,
    /// One Parquet file (needs --output).
    Parquet,
}

#[derive(Debug, Subcommand)]
/// What `query` does besides running a statement.
pub enum Command {
    /// A cluster's (or machine's) recent logs, newest first: what an alert points at.
    Logs(LogsArgs),
    /// A cluster's (or machine's) commonest log templates ("patterns") with their line counts
    /// and one example each: what kind of lines it is writing.
    Patterns(PatternsArgs),
    /// Serve table `logs` over the PostgreSQL wire protocol (Grafana, psql, any driver),
    /// read-only, password required.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, clap::Args)]
/// Flags of `query serve`.
pub struct ServeArgs {
    /// Address to listen on (5433: beside, not instead of, a local PostgreSQL on 5432).
    #[arg(long, env = "QUERY_SERVE_LISTEN", default_value = "127.0.0.1:5433")]
    pub listen: std::net::SocketAddr,
    /// The user clients log in as.
    #[arg(long, env = "QUERY_SERVE_USER", default_value = "logs")]
    pub user: String,
    /// A file whose first line is the password. Without it, the password is taken from
    /// QUERY_SERVE_PASSWORD; with neither the server does not start.
    #[arg(long, env = "QUERY_SERVE_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// TLS certificate chain (PEM). With a certificate, clients must use TLS.
    #[arg(long, env = "QUERY_SERVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "QUERY_SERVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With TLS configured, also accept unencrypted connections (the password is still never
    /// sent: SCRAM).
    #[arg(long, env = "QUERY_SERVE_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
    /// Sessions at once; one more is refused with "too many clients".
    #[arg(long, env = "QUERY_SERVE_MAX_CONNECTIONS", default_value_t = 64, value_parser = service::config::count_within::<1, 10_000>)]
    pub max_connections: usize,
    /// Longest a statement may run, rows sent included (a client's `SET statement_timeout`
    /// can only shorten it).
    #[arg(long, env = "QUERY_SERVE_STATEMENT_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub statement_timeout: std::time::Duration,
}

/// Which lines a drill-down reads.
#[derive(Debug, Clone, clap::Args)]
pub struct Selection {
    #[arg(long)]
    /// The cluster to read.
    pub cluster: String,
    #[arg(long)]
    /// Only this machine of it.
    pub machine: Option<String>,
    /// How far back, e.g. 15m, 2h. [default: 15m, unless --from is given]
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "from")]
    pub since: Option<std::time::Duration>,
    /// Start, RFC 3339 (with --to).
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// End, RFC 3339.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Lowest level: trace, debug, info, warn, error.
    #[arg(long)]
    pub level: Option<logrecord::Level>,
    /// Only messages matching this regular expression.
    #[arg(long)]
    pub grep: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
/// Flags of `query logs`.
pub struct LogsArgs {
    #[command(flatten)]
    /// Which lines.
    pub selection: Selection,
    /// At most this many rows.
    #[arg(long, default_value_t = 200, value_parser = service::config::count_within::<1, 1_000_000>)]
    pub limit: usize,
}

#[derive(Debug, Clone, clap::Args)]
/// Flags of `query patterns`.
pub struct PatternsArgs {
    #[command(flatten)]
    /// Which lines.
    pub selection: Selection,
    /// At most this many templates, commonest first.
    #[arg(long, default_value_t = 20, value_parser = service::config::count_within::<1, 100_000>)]
    pub limit: usize,
}

/// `1073741824`, `512K`, `64M`, `2G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let number = upper.trim_end_matches("IB").trim_end_matches('B');
    let (digits, shift) = match number.chars().last() {
        Some('K') => (&number[..number.len() - 1], 10),
        Some('M') => (&number[..number.len() - 1], 20),
        Some('G') => (&number[..number.len() - 1], 30),
        Some('T') => (&number[..number.len() - 1], 40),
        _ => (number, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512M or 2G"))?;
    match value.checked_mul(1 << shift) {
        Some(0) | None => Err(format!("{text:?} is not a usable size")),
        Some(bytes) => Ok(bytes),
    }
}

/// A quarter of the machine's memory (`MemTotal` in /proc/meminfo), or 2 GiB if unknown.
pub fn default_memory_limit() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    total_kib.map_or(2 << 30, |kib| kib * 1024 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_bytes("1073741824"), Ok(1 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert!(default_memory_limit() > 0);
    }

    #[test]
    fn zero_or_absurd_counts_are_refused() {
        for args in [
            &["query", "serve", "--max-connections", "0"][..],
            &["query", "logs", "--cluster", "c", "--limit", "0"],
            &[
                "query",
                "patterns",
                "--cluster",
                "c",
                "--limit",
                "100000000",
            ],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(
                error.contains("is out of bounds: give a value from"),
                "{args:?}: {error}"
            );
        }
    }
}
