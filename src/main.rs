//! `sqlcache` command line: run the proxy, validate its configuration, run
//! the binlog → Kafka publisher (`sqlcache cdc`) or the Kafka → MySQL sink
//! (`sqlcache sink`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sqlcache::{Config, Proxy};

#[derive(Parser)]
#[command(
    name = "sqlcache",
    version,
    about = "SQL-aware caching proxy for MySQL/MariaDB"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "SQLCACHE_CONFIG",
        default_value = "proxy.toml",
        global = true
    )]
    config: PathBuf,
    /// Validate the configuration, print every problem, and exit.
    #[arg(long, global = true)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Publish the MySQL/MariaDB binlog to Kafka as Debezium change events
    /// (the `[cdc]` section).
    Cdc,
    /// Apply Debezium change events from Kafka to `[backend]`, exactly
    /// once in effect (the `[sink]` section).
    Sink,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sqlcache: {e}");
            return ExitCode::from(2);
        }
    };
    let cdc = matches!(cli.command, Some(Command::Cdc));
    let sink = matches!(cli.command, Some(Command::Sink));
    if (cdc && cfg.cdc.is_none()) || (sink && cfg.sink.is_none()) {
        let section = if cdc { "cdc" } else { "sink" };
        eprintln!("sqlcache: {}: no [{section}] section", cli.config.display());
        return ExitCode::from(2);
    }
    if cli.check_config {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    sqlcache::telemetry::init(&cfg.log);
    raise_fd_limit();
    // Worker 0's runtime; `Proxy::run` starts the other workers.
    sqlcache::backend::set_worker(0);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sqlcache: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if cdc {
            return sqlcache::cdc::run(cfg, shutdown_signal())
                .await
                .map_err(anyhow::Error::from);
        }
        if sink {
            return sqlcache::sink::run(cfg, shutdown_signal())
                .await
                .map_err(anyhow::Error::from);
        }
        let proxy = Proxy::bind(cfg, Some(cli.config.clone())).await?;
        proxy.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sqlcache: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Each client and backend connection is a file descriptor: lift the soft
/// limit to the hard one, as network servers commonly do.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
