//! `query-scheduler`: a Ballista scheduler with the project's functions, codec and S3 settings.

use ballista_core::config::TaskSchedulingPolicy;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// The Ballista scheduler `query --cluster df://HOST:PORT` talks to; executors register with it.
#[derive(Debug, Parser)]
#[command(name = "query-scheduler", version)]
struct Args {
    /// Address of the scheduler's gRPC service.
    #[arg(
        long,
        env = "QUERY_SCHEDULER_LISTEN",
        default_value = "127.0.0.1:50050"
    )]
    listen: SocketAddr,
    /// An executor silent this long is taken for dead and dropped (executors beat every 5 s); a
    /// `query --cluster` statement it was part of is then run again on the executors left.
    #[arg(long, env = "QUERY_SCHEDULER_EXECUTOR_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    executor_timeout: std::time::Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    service::console_log::init("info,ballista=warn,ballista_scheduler=warn");
    let config = SchedulerConfig {
        bind_host: args.listen.ip().to_string(),
        external_host: args.listen.ip().to_string(),
        bind_port: args.listen.port(),
        executor_timeout_seconds: args.executor_timeout.as_secs().max(1),
        expire_dead_executor_interval_seconds: 5,
        // Executors pull their tasks. With Ballista 55's default (the scheduler pushes tasks),
        // a job whose executor was killed mid-stage waited for ever after the roll-back in our
        // trials; pulled, it goes on on the executors left. (The executors are set alike.)
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        // A task that cannot fetch a lost executor's shuffle output fails its job at once
        // instead of re-running stages: re-run stages were seen to count rows twice. Lost
        // executors are handled by `query --cluster`, which runs the statement again
        // (query/src/cluster/executor_watch.rs).
        stage_max_failures: 1,
        override_config_producer: Some(Arc::new(cluster::session_config)),
        override_session_builder: Some(Arc::new(cluster::scheduler_session)),
        override_logical_codec: Some(cluster::logical_codec()),
        ..Default::default()
    };
    let result = async {
        let cluster = BallistaCluster::new_from_config(&config).await?;
        tracing::info!(addr = %args.listen, "scheduler listening");
        start_server(cluster, args.listen, Arc::new(config)).await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("query-scheduler: {error}");
            ExitCode::FAILURE
        }
    }
}
