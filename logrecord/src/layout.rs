//! The on-disk layout, one home for every name and path the binaries write or read:
//!
//! | what | where |
//! |---|---|
//! | raw hourly log (agent) | `<data-dir>/logs/agent.YYYY-MM-DD-HH.log` |
//! | hourly Parquet (agent's cold path) | `<data-dir>/parquet/date=YYYY-MM-DD/hour=HH/<machine>.YYYY-MM-DD-HH.parquet` |
//! | warm store partition (collector's Delta table) | `date=YYYY-MM-DD/hour=HH/cluster=<cluster>/` |
//! | a file the admin API offers | [`Offered`]: `logs/…` or `parquet/…`, relative to the data directory |
//!
//! Hours are UTC. Names sort in time order, the order the shipper reads raw files in.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use std::path::{Path, PathBuf};

/// Directory of the raw hourly logs, under the agent's data directory.
pub const RAW_DIR: &str = "logs";
/// Directory of the hourly Parquet files, under the agent's data directory.
pub const PARQUET_DIR: &str = "parquet";
const RAW_PREFIX: &str = "agent.";
const RAW_SUFFIX: &str = ".log";
/// Partition columns of an hour's directories, `date=YYYY-MM-DD/hour=HH` (the agent's cold path).
pub const HOUR_PARTITIONS: [&str; 2] = ["date", "hour"];
/// Partition columns of the warm store, `date=YYYY-MM-DD/hour=HH/cluster=<cluster>`, in
/// directory order (the Delta table's and plain hive copies' alike).
pub const WARM_PARTITIONS: [&str; 3] = [HOUR_PARTITIONS[0], HOUR_PARTITIONS[1], "cluster"];
/// `YYYY-MM-DD-HH`, the hour stamp in file names.
const STAMP: &str = "%Y-%m-%d-%H";

/// One UTC hour: the unit every file of the layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(DateTime<Utc>);

impl Hour {
    /// The hour `time` falls in.
    pub fn of(time: DateTime<Utc>) -> Self {
        let start = time
            .with_nanosecond(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_minute(0))
            .unwrap_or(time);
        Self(start)
    }

    /// Its first instant.
    pub fn start(self) -> DateTime<Utc> {
        self.0
    }

    /// The hour after it.
    pub fn next(self) -> Self {
        Self(self.0 + chrono::Duration::hours(1))
    }

    /// `YYYY-MM-DD`: the `date` partition value.
    pub fn date(self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }

    /// `HH`: the `hour` partition value.
    pub fn hour(self) -> String {
        self.0.format("%H").to_string()
    }

    /// `YYYY-MM-DD-HH`.
    pub fn stamp(self) -> String {
        self.0.format(STAMP).to_string()
    }

    /// From `YYYY-MM-DD-HH`; `None` for anything else (a 24th hour, 29 February of a common year).
    pub fn from_stamp(stamp: &str) -> Option<Self> {
        if stamp.len() != 13 {
            return None;
        }
        NaiveDateTime::parse_from_str(&format!("{stamp}:00"), "%Y-%m-%d-%H:%M")
            .ok()
            .map(|t| Self(t.and_utc()))
    }

    /// From partition values `date=YYYY-MM-DD` and `hour=HH` (the values only).
    pub fn from_partition(date: &str, hour: &str) -> Option<Self> {
        let day = parse_date(date)?;
        let hour = parse_hour(hour)?;
        Some(Self(Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0)?)))
    }

    /// `agent.YYYY-MM-DD-HH.log`.
    pub fn raw_log_name(self) -> String {
        format!("{RAW_PREFIX}{}{RAW_SUFFIX}", self.stamp())
    }

    /// The hour of a raw log's file name; `None` for any other name.
    pub fn from_raw_log_name(name: &str) -> Option<Self> {
        Self::from_stamp(name.strip_prefix(RAW_PREFIX)?.strip_suffix(RAW_SUFFIX)?)
    }

    /// `date=YYYY-MM-DD/hour=HH`.
    pub fn partition_dir(self) -> PathBuf {
        let [date, hour] = HOUR_PARTITIONS;
        PathBuf::from(format!("{date}={}", self.date())).join(format!("{hour}={}", self.hour()))
    }

    /// `date=YYYY-MM-DD/hour=HH/cluster=<cluster>`: a warm-store partition.
    pub fn warm_partition_dir(self, cluster: &str) -> PathBuf {
        let name = WARM_PARTITIONS[2];
        self.partition_dir().join(format!("{name}={cluster}"))
    }

    /// The hour of a file under `date=…/hour=…/` (its two parent directories).
    pub fn of_partitioned_file(path: &Path) -> Option<Self> {
        let hour_dir = path.parent()?;
        let hour = hour_dir.file_name()?.to_str()?.strip_prefix("hour=")?;
        let date = hour_dir
            .parent()?
            .file_name()?
            .to_str()?
            .strip_prefix("date=")?;
        Self::from_partition(date, hour)
    }

    /// The hour and cluster of a warm-store data file, `…/date=…/hour=…/cluster=…/<file>`
    /// (`/`-separated, as object stores and the Delta log spell paths).
    pub fn of_warm_file(path: &str) -> Option<(Self, String)> {
        let mut dirs = path.rsplit('/').skip(1);
        let cluster = dirs.next()?.strip_prefix("cluster=")?;
        let hour = dirs.next()?.strip_prefix("hour=")?;
        let date = dirs.next()?.strip_prefix("date=")?;
        Some((Self::from_partition(date, hour)?, cluster.to_owned()))
    }

    /// `date=…/hour=…/<machine>.YYYY-MM-DD-HH.parquet`, relative to the Parquet directory.
    pub fn parquet_file(self, machine: &str) -> PathBuf {
        self.partition_dir()
            .join(format!("{machine}.{}.parquet", self.stamp()))
    }
}

/// A `date` partition value, `YYYY-MM-DD`, exactly (no single-digit month or day).
pub fn parse_date(value: &str) -> Option<NaiveDate> {
    (value.len() == 10)
        .then(|| NaiveDate::parse_from_str(value, "%Y-%m-%d").ok())
        .flatten()
}

/// An `hour` partition value, `00`-`23`, exactly.
pub fn parse_hour(value: &str) -> Option<u32> {
    (value.len() == 2 && value.bytes().all(|b| b.is_ascii_digit()))
        .then(|| value.parse().ok())
        .flatten()
        .filter(|hour| *hour < 24)
}

/// Whether `name` is a raw hourly log's file name.
pub fn is_raw_log_name(name: &str) -> bool {
    Hour::from_raw_log_name(name).is_some()
}

/// One file the agent's admin API offers, as listed and as fetched by `query`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Offered {
    /// Relative to the data directory: `logs/agent.….log` or `parquet/date=…/hour=…/….parquet`.
    pub name: String,
    /// `raw` or `parquet`.
    pub kind: String,
    /// Size of the file, bytes.
    pub bytes: u64,
}

impl Offered {
    /// The hour the file holds, from its name.
    pub fn hour(&self) -> Option<Hour> {
        match self.kind.as_str() {
            "raw" => Hour::from_raw_log_name(self.name.strip_prefix("logs/")?),
            "parquet" => Hour::of_partitioned_file(Path::new(&self.name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_file_names_its_hour_and_cluster() {
        let (hour, cluster) =
            Hour::of_warm_file("warm/date=2026-03-01/hour=07/cluster=east-1/part-0.parquet")
                .unwrap();
        assert_eq!(
            (hour.stamp().as_str(), cluster.as_str()),
            ("2026-03-01-07", "east-1")
        );
        assert!(Hour::of_warm_file("date=2026-03-01/hour=07/part-0.parquet").is_none());
        assert!(Hour::of_warm_file("date=2026-3-1/hour=07/cluster=c/x.parquet").is_none());
    }

    #[test]
    fn names_round_trip_and_reject_impossible_hours() {
        let hour = Hour::from_stamp("2028-02-29-23").unwrap();
        assert_eq!(hour.raw_log_name(), "agent.2028-02-29-23.log");
        assert_eq!(
            Hour::from_raw_log_name("agent.2028-02-29-23.log"),
            Some(hour)
        );
        assert_eq!(
            hour.parquet_file("host-1"),
            PathBuf::from("date=2028-02-29/hour=23/host-1.2028-02-29-23.parquet")
        );
        assert_eq!(
            Hour::of_partitioned_file(Path::new("/p/date=2028-02-29/hour=23/h.parquet")),
            Some(hour)
        );
        assert_eq!(hour.next().stamp(), "2028-03-01-00");
        for bad in [
            "agent.log",
            "agent.2026-02-29.log",
            "agent.2026-02-29-23.log.tmp",
            "x.2026-02-29-23.log",
            "agent.2026-02-2x-23.log",
            "agent.2027-02-29-00.log",
            "agent.2026-01-01-24.log",
        ] {
            assert!(!is_raw_log_name(bad), "{bad}");
        }
        assert_eq!(Hour::from_partition("2026-12-01", "7"), None);
        assert_eq!(Hour::from_partition("notadate", "07"), None);
        assert_eq!(
            Hour::of(Utc.with_ymd_and_hms(2026, 12, 1, 7, 59, 59).unwrap()).stamp(),
            "2026-12-01-07"
        );
    }
}
