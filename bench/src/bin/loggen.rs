//! `loggen`: writes realistic log records in the warm-store layout, for benchmarks and tests of
//! queries over months of data.
//!
//! `loggen --days D --machines M --events-per-hour N --out DIR [--seed S] [--start YYYY-MM-DD]
//!  [--format hive|delta] [--flushes-per-hour K]`
//!
//! D days x M machines x N events per machine-hour, one file per hour and cluster, as hive
//! Parquet in `DIR/date=YYYY-MM-DD/hour=HH/cluster=C/loggen-<hour>.parquet`, or (`--format delta`)
//! as the warm store's Delta table (the collector's own writer, one commit per day; the files of a
//! compacted store: one per hour and cluster). Machines are spread over clusters (`cluster-0`, ...); each
//! cluster has its own latency distribution (log-normal) so per-cluster percentiles differ. Mostly
//! 200s, some 400/404/429/500; a spread of api versions, paths and formats; a share of WARN and
//! ERROR events that are not requests. Deterministic: the same arguments write the same rows.
//! Days are generated in parallel, one thread per core.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use logrecord::layout::Hour;
use logrecord::{Level, LogRecord};
use std::path::{Path, PathBuf};

const PATHS: &[(&str, u32)] = &[
    ("/metadata/instance", 30),
    ("/metadata/instance/compute", 25),
    ("/metadata/instance/compute/vmId", 15),
    (
        "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress",
        15,
    ),
    ("/metadata/instance/compute/tagsList", 5),
    ("/metadata/versions", 10),
];
const VERSIONS: &[(&str, u32)] = &[
    ("2017-08-01", 5),
    ("2018-02-01", 10),
    ("2019-06-01", 10),
    ("2020-09-01", 15),
    ("2021-02-01", 30),
    ("2023-07-01", 20),
    ("2025-04-07", 10),
];
const STATUSES: &[(u16, u32)] = &[(200, 930), (400, 25), (404, 20), (429, 20), (500, 5)];
const MACHINES_PER_CLUSTER: usize = 10;

/// Which layout `--out` gets.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
enum Format {
    /// Plain hive-partitioned Parquet files.
    Hive,
    /// The warm store's Delta table (the collector's writer).
    Delta,
}

/// Writes D days x M machines x N events per machine-hour of realistic log records, in the
/// warm-store layout. Deterministic: the same arguments write the same rows.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "loggen")]
struct Args {
    /// Days of records.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    days: u32,
    /// Machines (10 per cluster).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    machines: usize,
    /// Events per machine and hour.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    events_per_hour: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day, YYYY-MM-DD.
    #[arg(long, default_value = "2026-01-01")]
    start: NaiveDate,
    /// Layout of the output.
    #[arg(long, value_enum, default_value_t = Format::Hive)]
    format: Format,
    /// Delta only: files per hour and cluster, as that many collector flushes would leave them
    /// before compaction (1: as compaction leaves them).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=60))]
    flushes_per_hour: usize,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let started = std::time::Instant::now();
    if args.format == Format::Delta {
        warm_table::register_storage();
        let url = warm_table::location(&args.out.to_string_lossy())?;
        tokio::runtime::Runtime::new()?.block_on(warm_table::open_or_create(&url))?;
    }
    let rows: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|worker| {
                let args = &args;
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut rows = 0;
                    for day in (0..args.days).filter(|d| *d as usize % threads == worker) {
                        rows += write_day(args, day)?;
                    }
                    Ok(rows)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
            .sum::<anyhow::Result<u64>>()
    })?;
    if args.format == Format::Delta {
        // As a table the collector fills has one (every 100 commits): readers start from it.
        let url = warm_table::location(&args.out.to_string_lossy())?;
        tokio::runtime::Runtime::new()?.block_on(warm_table::checkpoint(&url))?;
    }
    eprintln!(
        "loggen: {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_day(args: &Args, day: u32) -> anyhow::Result<u64> {
    let date = args.start + Duration::days(day.into());
    let clusters = args.machines.div_ceil(MACHINES_PER_CLUSTER);
    let mut rows = 0;
    // Per flush, its files (one commit each, as the collector's flushes are).
    let mut flushes: Vec<Vec<warm_table::PartitionFile>> =
        (0..args.flushes_per_hour).map(|_| Vec::new()).collect();
    for hour in 0..24 {
        let start = date.and_hms_opt(hour, 0, 0).unwrap_or_default().and_utc();
        for cluster in 0..clusters {
            let machines = (cluster * MACHINES_PER_CLUSTER)
                ..((cluster + 1) * MACHINES_PER_CLUSTER).min(args.machines);
            let mut records = Vec::with_capacity(machines.len() * args.events_per_hour as usize);
            for machine in machines {
                generate(args, start, cluster, machine, &mut records);
            }
            rows += records.len() as u64;
            if args.format == Format::Delta {
                // Consecutive events go to different flushes, as a collector's would.
                for (flush, files) in flushes.iter_mut().enumerate() {
                    let mut share: Vec<LogRecord> = records
                        .iter()
                        .skip(flush)
                        .step_by(args.flushes_per_hour)
                        .cloned()
                        .collect();
                    if !share.is_empty() {
                        files.extend(warm_table::partition_files(&mut share)?);
                    }
                }
                continue;
            }
            let path = partition(&args.out, start, cluster)
                .join(format!("loggen-{}.parquet", start.format("%Y%m%d%H")));
            logrecord::parquet_file::write(&path, &mut records)?;
        }
    }
    if args.format == Format::Delta {
        let url = warm_table::location(&args.out.to_string_lossy())?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let mut table = warm_table::open(&url).await?;
                for files in flushes {
                    warm_table::append(&mut table, files, Vec::new(), &[], async {})
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                anyhow::Ok(())
            })?;
    }
    Ok(rows)
}

fn partition(out: &Path, hour: DateTime<Utc>, cluster: usize) -> PathBuf {
    out.join(Hour::of(hour).warm_partition_dir(&format!("cluster-{cluster}")))
}

/// One machine's events of one hour.
fn generate(
    args: &Args,
    hour: DateTime<Utc>,
    cluster: usize,
    machine: usize,
    out: &mut Vec<LogRecord>,
) {
    let hour_index = (hour.timestamp() / 3600) as u64;
    let mut rng = fastrand::Rng::with_seed(
        args.seed
            ^ hour_index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (machine as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    );
    // Per-cluster latency: a median from 60 to ~200 microseconds, and a heavier tail for some.
    let median_us = 60.0 + 35.0 * cluster as f64;
    let sigma = 0.45 + 0.1 * (cluster % 3) as f64;
    let mut offsets: Vec<u64> = (0..args.events_per_hour)
        .map(|_| rng.u64(0..3_600_000_000))
        .collect();
    offsets.sort_unstable();
    for (i, offset) in offsets.into_iter().enumerate() {
        let timestamp = hour + Duration::microseconds(offset as i64);
        let seq = hour_index * 10_000_000 + i as u64;
        let mut record = LogRecord::new(
            seq,
            uuid::Builder::from_unix_timestamp_millis(
                timestamp.timestamp_millis() as u64,
                &random_bytes(&mut rng),
            )
            .into_uuid(),
            timestamp,
            Level::Info,
            "imds::request",
            "request served",
            format!("cluster-{cluster}"),
            format!("host-{machine:03}"),
        );
        if rng.u32(0..100) < 3 {
            // Not a request: the agent's own warnings and errors.
            let error = rng.bool();
            record.level = if error { Level::Error } else { Level::Warn };
            record.target = "agent::metadata::upstream".into();
            // A few shapes with values in them, as the agent's own lines have: what the pattern
            // ids and `query patterns` group.
            record.message = match (error, rng.u32(0..4)) {
                (true, 0) => {
                    "upstream metadata fetch failed; the last good document stays served".into()
                }
                (true, 1) => format!(
                    "upstream 169.254.169.{}:80 refused the connection after {} ms",
                    rng.u8(1..255),
                    rng.u32(1..5000)
                ),
                (true, 2) => format!(
                    "metadata document of {} bytes failed to parse at line {}",
                    rng.u32(100..90_000),
                    rng.u32(1..400)
                ),
                (true, _) => format!(
                    "kafka delivery to partition {} failed: broker transport failure",
                    rng.u8(0..16)
                ),
                (false, 0) => "metadata document refused; the last good copy stays served".into(),
                (false, 1) => format!("request queue at {}% of its bound", rng.u8(50..100)),
                (false, 2) => format!("disk budget {}% used by the log files", rng.u8(70..100)),
                (false, _) => format!(
                    "caller 10.{cluster}.{}.{} throttled after {} requests",
                    rng.u8(0..255),
                    rng.u8(4..250),
                    rng.u32(100..2000)
                ),
            };
            record.fields =
                Some(serde_json::from_str(r#"{"error":"connection refused"}"#).unwrap_or_default());
        } else {
            let path = pick(&mut rng, PATHS);
            let status = pick(&mut rng, STATUSES);
            let latency = (median_us * (sigma * normal(&mut rng)).exp()).max(5.0) as u64;
            // As the agent's `x-ms-request-id`: a UUIDv4.
            record.request_id =
                Some(uuid::Builder::from_random_bytes(random_bytes(&mut rng)).into_uuid());
            record.method = Some("GET".into());
            record.path = Some(path.into());
            record.api_version = Some(pick(&mut rng, VERSIONS).into());
            record.format = Some(
                if path.ends_with("vmId") || path.ends_with("Address") {
                    "text"
                } else {
                    "json"
                }
                .into(),
            );
            record.status = Some(status);
            record.latency_us = Some(latency);
            record.response_bytes = Some(if status == 200 {
                rng.u64(30..3000)
            } else {
                rng.u64(60..200)
            });
            record.caller = Some(format!("10.{cluster}.{}.{}", machine % 256, rng.u8(4..250)));
        }
        out.push(record);
    }
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, weighted: &[(T, u32)]) -> T {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut roll = rng.u32(0..total);
    for (value, weight) in weighted {
        if roll < *weight {
            return *value;
        }
        roll -= weight;
    }
    weighted[0].0
}

/// A standard normal sample (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let (u, v) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn random_bytes<const N: usize>(rng: &mut fastrand::Rng) -> [u8; N] {
    std::array::from_fn(|_| rng.u8(..))
}
