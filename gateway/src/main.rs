//! `gateway`: `run` serves the proxy; `check` validates a configuration.

use anyhow::{anyhow, bail};
use clap::{Parser, Subcommand};
use gateway::proxy::Gateway;
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The API gateway in front of the TSDB pool.
#[derive(Debug, Parser)]
#[command(name = "gateway", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The bootstrap file (listeners, admin port, policies).
    #[arg(long, global = true, default_value = "config/gateway.yaml")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the bootstrap file and every policy file; print each error as
    /// `file:line:column: field: message`. Exits 1 on any error, 0 otherwise.
    Check,
    /// Run the gateway (the default).
    Run,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => match run(&cli.config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

/// Loads the configuration and serves until SIGTERM (graceful) or SIGINT.
fn run(config: &Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let bootstrap = gateway::config::load_bootstrap(config).map_err(|e| anyhow!("{e}"))?;
    let reloader =
        gateway::reload::Reloader::start(bootstrap.policies.clone()).map_err(|e| anyhow!("{e}"))?;
    let snapshot = reloader.snapshot.clone();
    if let Err(e) = gateway::reload::watch::spawn(reloader.clone()) {
        tracing::warn!(error = %e, "cannot watch the policy files; reload with SIGHUP or POST /admin/reload");
    }
    gateway::admin::spawn(
        bootstrap.admin,
        gateway::admin::AdminState {
            snapshot: snapshot.clone(),
            reloader: reloader.clone(),
        },
    )
    .map_err(|e| anyhow!("admin port {}: {e}", bootstrap.admin))?;

    // Measured on this kind of machine: one worker per thread without work stealing, with
    // mimalloc, is Pingora's fastest setup (see docs/benchmarks.md).
    let conf = ServerConf {
        threads: bootstrap.threads,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        upstream_keepalive_pool_size: 256,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Gateway { snapshot });
    for l in &bootstrap.listeners {
        if l.tls.is_some() {
            bail!("listener {}: TLS listeners are not served yet", l.name);
        }
        service.add_tcp(&l.address.to_string());
        tracing::info!(listener = %l.name, address = %l.address, "listening");
    }
    server.add_service(service);
    server.run_forever()
}

fn check(config: &std::path::Path) -> ExitCode {
    let bootstrap = match gateway::config::load_bootstrap(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    match gateway::config::load_policy(&bootstrap.policies) {
        Ok(p) => {
            println!(
                "{}: ok ({} listener(s), {} pool(s), {} route(s))",
                config.display(),
                bootstrap.listeners.len(),
                p.pools.len(),
                p.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
