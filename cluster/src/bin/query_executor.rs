//! `query-executor`: a Ballista executor with the project's functions, codec and S3 settings.

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::object_store::runtime_env_with_s3_support;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use clap::Parser;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// An executor of the project's Ballista cluster: registers with the scheduler, runs its tasks.
#[derive(Debug, Parser)]
#[command(name = "query-executor", version)]
struct Args {
    /// The scheduler, `host:port`.
    #[arg(
        long,
        env = "QUERY_EXECUTOR_SCHEDULER",
        default_value = "127.0.0.1:50050"
    )]
    scheduler: String,
    /// Address the executor listens on.
    #[arg(long, env = "QUERY_EXECUTOR_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Name or address the scheduler and other executors reach it at. [default: --host]
    #[arg(long, env = "QUERY_EXECUTOR_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Port of its Arrow Flight service (shuffle data).
    #[arg(long, env = "QUERY_EXECUTOR_PORT", default_value_t = 50051)]
    port: u16,
    /// Port of its gRPC service.
    #[arg(long, env = "QUERY_EXECUTOR_GRPC_PORT", default_value_t = 50052)]
    grpc_port: u16,
    /// Tasks it runs at once. [default: the number of cores]
    #[arg(long, env = "QUERY_EXECUTOR_TASKS")]
    tasks: Option<usize>,
    /// Directory of its shuffle files. [default: a temporary directory]
    #[arg(long, env = "QUERY_EXECUTOR_WORK_DIR")]
    work_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    service::console_log::init("info,ballista=warn,ballista_executor=warn");
    let Some((scheduler_host, scheduler_port)) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
    else {
        eprintln!(
            "query-executor: --scheduler {:?} is not host:port",
            args.scheduler
        );
        return ExitCode::from(2);
    };
    let host = args.host.to_string();
    let config = ExecutorProcessConfig {
        scheduler_host,
        scheduler_port,
        external_host: Some(args.external_host.unwrap_or_else(|| host.clone())),
        bind_host: host,
        port: args.port,
        grpc_port: args.grpc_port,
        vcores: args
            .tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        work_dir: args.work_dir.map(|dir| dir.display().to_string()),
        // Often enough for the scheduler's executor timeout (query-scheduler, 20 s by default) to
        // tell a killed executor from a live one within seconds.
        executor_heartbeat_interval_seconds: 5,
        // Pulls its tasks, as the scheduler expects (query_scheduler.rs says why).
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        override_function_registry: Some(Arc::new(cluster::function_registry())),
        override_config_producer: Some(Arc::new(cluster::session_config)),
        override_runtime_producer: Some(Arc::new(runtime_env_with_s3_support)),
        override_logical_codec: Some(cluster::logical_codec()),
        ..Default::default()
    };
    tracing::info!(scheduler = %args.scheduler, addr = %format!("{}:{}", args.host, args.port), "executor starting");
    match start_executor_process(Arc::new(config)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("query-executor: {error}");
            ExitCode::FAILURE
        }
    }
}
