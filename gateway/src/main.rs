//! `gateway`: `run` serves the proxy; `check` validates a configuration; `dev-certs` makes
//! certificates for the example TLS listener. Exit codes: 0 ok, 1 error.

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use gateway::devcerts;
use gateway::server::RunOptions;
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
    /// Validate the bootstrap file, its TLS files and every policy file; print each error as
    /// `file:line:column: field: message`. Exits 1 on any error, 0 otherwise.
    Check,
    /// Run the gateway (the default). SIGTERM drains and exits 0; SIGHUP reloads the
    /// policies; SIGQUIT hands the listeners to a process started with `--upgrade`.
    Run {
        /// Take the listening sockets from the running gateway of the same configuration,
        /// then send SIGQUIT to the old process: no connection is refused in between.
        #[arg(long)]
        upgrade: bool,
    },
    /// Write a development CA and a server certificate for localhost into a folder
    /// (ca.pem, ca.key, server.pem, server.key), unless they are all there already.
    DevCerts {
        #[arg(long, default_value = "config/dev-certs")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run { upgrade: false }) {
        Command::Check => return check(&cli.config),
        Command::Run { upgrade } => run(&cli.config, RunOptions { upgrade }),
        Command::DevCerts { out } => dev_certs(&out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(config: &Path, options: RunOptions) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let bootstrap = gateway::config::load_bootstrap(config).map_err(|e| anyhow!("{e}"))?;
    gateway::server::run(bootstrap, options)
}

fn dev_certs(out: &Path) -> anyhow::Result<()> {
    match devcerts::ensure(out)? {
        devcerts::Outcome::Kept => println!("{}: certificates already there, kept", out.display()),
        devcerts::Outcome::Created(dir) => println!(
            "{}: wrote {} (trust ca.pem, e.g. curl --cacert {}/ca.pem)",
            dir.display(),
            devcerts::FILES.join(", "),
            dir.display()
        ),
    }
    Ok(())
}

/// Global rate limits need Redis in the bootstrap file (checked without connecting).
fn check_limits(
    bootstrap: &gateway::config::Bootstrap,
    policy: &gateway::config::Policy,
) -> Result<(), gateway::config::ConfigErrors> {
    use gateway::config::policy::Scope;
    if bootstrap.redis.is_some() {
        return Ok(());
    }
    let registry = gateway::ratelimit::LimitRegistry::new(
        None,
        std::sync::Arc::new(gateway::clock::SystemClock),
    );
    if policy
        .rate_limits
        .values()
        .any(|l| l.scope == Scope::Global)
    {
        registry.build(policy)?;
    }
    Ok(())
}

fn check(config: &Path) -> ExitCode {
    let bootstrap = match gateway::config::load_bootstrap(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let mut ok = true;
    if let Err(e) = gateway::server::check_listeners(&bootstrap) {
        eprintln!("{}: {e:#}", config.display());
        ok = false;
    }
    let policy = gateway::config::load_policy(&bootstrap.policies).and_then(|mut p| {
        // Backends' names must resolve, as at start.
        gateway::dns::Names::default().resolve(&mut p, |_| true)?;
        // Key sets load as they would in service: a missing or empty JWKS is an error here.
        gateway::auth::AuthRegistry::default().build(&p)?;
        // Upstream TLS files load as they would in service.
        gateway::upstream::tls::TlsRegistry::default().build(&p)?;
        check_limits(&bootstrap, &p)?;
        Ok(p)
    });
    match policy {
        Ok(p) if ok => {
            println!(
                "{}: ok ({} listener(s), {} pool(s), {} route(s), {} cache(s), policy {})",
                config.display(),
                bootstrap.listeners.len(),
                p.pools.len(),
                p.routes.len(),
                p.caches.len(),
                &p.digest[..p.digest.len().min(12)]
            );
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
