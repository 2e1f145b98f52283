//! `gateway`: `run` serves the proxy; `check` validates a configuration; `dev-certs` makes
//! certificates for the example TLS listener; `hash-key` makes an API-key file entry.
//! Exit codes: 0 ok, 1 error.

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
    /// How `run` writes its process log on standard error: `text` for people, `json` (one
    /// object per event, its fields and its span's, such as the request id) for collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "GATEWAY_LOG_FORMAT")]
    log_format: LogFormat,
}

/// The process log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Read an API key from standard input (one trailing newline dropped) and print the
    /// `sha256:` line of its key-file entry, e.g. `printf %s "$KEY" | gateway hash-key`.
    HashKey {
        /// Print an `argon2:` line instead (Argon2id, m=19 MiB, t=2, p=1, random salt): for
        /// keys a person chose, which a SHA-256 would not protect against guessing.
        #[arg(long)]
        argon2: bool,
        /// Make a new random key (32 bytes, hex) instead of reading one, and print it first.
        #[arg(long)]
        generate: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run { upgrade: false }) {
        Command::Check => return check(&cli.config),
        Command::Run { upgrade } => run(&cli.config, RunOptions { upgrade }, cli.log_format),
        Command::DevCerts { out } => dev_certs(&out),
        Command::HashKey { argon2, generate } => hash_key(argon2, generate),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(config: &Path, options: RunOptions, log_format: LogFormat) -> anyhow::Result<()> {
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log.json().flatten_event(true).init(),
    }
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
    match devcerts::ensure_api_key(out)? {
        devcerts::Outcome::Kept => println!("{}: API key already there, kept", out.display()),
        devcerts::Outcome::Created(dir) => println!(
            "{}: wrote a development API key (the key in api-key, its hash in api-keys.yaml)",
            dir.display()
        ),
    }
    Ok(())
}

fn hash_key(argon2: bool, generate: bool) -> anyhow::Result<()> {
    use gateway::config::api_keys::{argon2_phc, random_key, sha256_hex};
    use std::io::Read as _;
    let key: Vec<u8> = if generate {
        let key = random_key();
        println!("key: {key}");
        key.into_bytes()
    } else {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input)?;
        if input.ends_with(b"\n") {
            input.pop();
            if input.ends_with(b"\r") {
                input.pop();
            }
        }
        input
    };
    if key.is_empty() {
        anyhow::bail!("no key on standard input (e.g. printf %s \"$KEY\" | gateway hash-key)");
    }
    if argon2 {
        let phc = argon2_phc(&key).map_err(|e| anyhow!("argon2: {e}"))?;
        println!("argon2: \"{phc}\"");
    } else {
        println!("sha256: {}", sha256_hex(&key));
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
        gateway::connect::tls::TlsRegistry::default().build(&p)?;
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
