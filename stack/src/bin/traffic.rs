//! A small traffic generator so the dashboards move: an open-loop stream of metadata requests to
//! each agent, at a fixed rate whatever the agent's latency (a slow agent gets the same offered
//! load, as VMs would keep calling), mostly valid with some bad ones, spread over many caller
//! addresses so the per-caller rate limit sees realistic callers. One caller bursts now and then,
//! so throttling shows too. Prints a status summary every 30 s; stops on SIGTERM or Ctrl-C.

use clap::Parser;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(about = "Drives metadata API traffic at a fixed rate to every agent given")]
struct Args {
    /// Agent metadata API base URL, e.g. http://127.0.0.1:18081 (repeat, or comma-separated).
    #[arg(
        long = "target",
        env = "TRAFFIC_TARGETS",
        value_delimiter = ',',
        required = true
    )]
    targets: Vec<String>,
    /// Requests per second to each target.
    #[arg(long, env = "TRAFFIC_RATE", default_value_t = 10.0)]
    rate: f64,
    /// Callers to spread the requests over: 127.0.1.1, 127.0.1.2, ... (loopback only); 0 sends
    /// from the default address (containers, where loopback aliases do not reach the agents).
    #[arg(long, env = "TRAFFIC_CALLERS", default_value_t = 16)]
    callers: u8,
    /// Every this many seconds one caller sends a burst above the rate limit (0: never).
    #[arg(long, env = "TRAFFIC_BURST_EVERY", default_value_t = 20)]
    burst_every: u64,
}

/// Api-versions VMs ask for, weighted towards recent ones.
const API_VERSIONS: &[&str] = &[
    "2021-02-01",
    "2021-02-01",
    "2021-02-01",
    "2023-07-01",
    "2023-07-01",
    "2020-09-01",
    "2019-06-01",
    "2017-08-01",
];

/// Requests with how often each is made (out of 100): mostly good, some refused.
const MIX: &[(u32, &str, bool)] = &[
    (40, "/metadata/instance?api-version={v}", true),
    (15, "/metadata/instance/compute?api-version={v}", true),
    (10, "/metadata/instance/network?api-version={v}", true),
    (
        10,
        "/metadata/instance/compute/location?api-version={v}&format=text",
        true,
    ),
    (
        8,
        "/metadata/instance/compute/vmSize?api-version={v}&format=text",
        true,
    ),
    (5, "/metadata/versions", true),
    (4, "/metadata/instance?api-version={v}", false),
    (4, "/metadata/instance?api-version=2099-01-01", true),
    (
        4,
        "/metadata/instance/compute/noSuchField?api-version={v}",
        true,
    ),
];

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 10_000.0,
        "--rate must be in (0, 10000]"
    );
    let clients = clients(args.callers)?;
    let counts: Counts = Arc::default();
    // Bounds the requests waiting on a stalled agent: beyond this, ticks are counted and skipped.
    let in_flight = Arc::new(Semaphore::new(512));
    for target in &args.targets {
        let target = target.trim_end_matches('/').to_owned();
        tokio::spawn(drive(
            target.clone(),
            args.rate,
            clients.clone(),
            Arc::clone(&counts),
            Arc::clone(&in_flight),
        ));
        if args.burst_every > 0 {
            tokio::spawn(burst(
                target,
                Duration::from_secs(args.burst_every),
                clients[0].clone(),
                Arc::clone(&counts),
            ));
        }
    }
    eprintln!(
        "traffic: {} req/s to each of {} agent(s) from {} caller(s)",
        args.rate,
        args.targets.len(),
        clients.len()
    );
    let mut report = tokio::time::interval(Duration::from_secs(30));
    report.tick().await;
    let stop = service::shutdown::signalled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = report.tick() => eprintln!("traffic: {:?}", counts.lock().map(|c| c.clone()).unwrap_or_default()),
            _ = &mut stop => {
                eprintln!("traffic: stopped; {:?}", counts.lock().map(|c| c.clone()).unwrap_or_default());
                return Ok(());
            }
        }
    }
}

/// One HTTP client per caller address (a client's connections keep their source address).
fn clients(callers: u8) -> anyhow::Result<Vec<reqwest::Client>> {
    let build = |address: Option<IpAddr>| {
        reqwest::Client::builder()
            .local_address(address)
            .timeout(Duration::from_secs(10))
            .build()
    };
    if callers == 0 {
        return Ok(vec![build(None)?]);
    }
    (1..=callers)
        .map(|n| Ok(build(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))))?))
        .collect()
}

async fn drive(
    target: String,
    rate: f64,
    clients: Vec<reqwest::Client>,
    counts: Counts,
    in_flight: Arc<Semaphore>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            count(&counts, "skipped (too many in flight)");
            continue;
        };
        let client = clients[fastrand::usize(..clients.len())].clone();
        let (path, with_header) = pick();
        let request = client.get(format!("{target}{path}"));
        let request = if with_header {
            request.header("Metadata", "true")
        } else {
            request
        };
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let outcome = match request.send().await {
                Ok(response) => response.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(_) => "connection failed".to_owned(),
            };
            count(&counts, &outcome);
            drop(permit);
        });
    }
}

/// Every `every`, one caller sends 12 requests at once: above Azure's 5 per second per caller.
async fn burst(target: String, every: Duration, client: reqwest::Client, counts: Counts) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let url = format!("{target}/metadata/instance/compute?api-version=2021-02-01");
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..12 {
            requests.spawn(client.get(&url).header("Metadata", "true").send());
        }
        while let Some(outcome) = requests.join_next().await {
            let outcome = match outcome {
                Ok(Ok(response)) => response.status().as_u16().to_string(),
                _ => "connection failed".to_owned(),
            };
            count(&counts, &outcome);
        }
    }
}

fn pick() -> (String, bool) {
    let total: u32 = MIX.iter().map(|(weight, _, _)| weight).sum();
    let mut roll = fastrand::u32(..total);
    for (weight, template, with_header) in MIX {
        if roll < *weight {
            let version = API_VERSIONS[fastrand::usize(..API_VERSIONS.len())];
            return (template.replace("{v}", version), *with_header);
        }
        roll -= weight;
    }
    (MIX[0].1.replace("{v}", API_VERSIONS[0]), true)
}

fn count(counts: &Counts, outcome: &str) {
    if let Ok(mut counts) = counts.lock() {
        *counts.entry(outcome.to_owned()).or_default() += 1;
    }
}
