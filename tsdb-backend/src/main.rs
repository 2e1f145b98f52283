//! `tsdb-backend`: runs one node in the foreground until SIGTERM or SIGINT.

use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use tsdb_backend::cli::{default_memory_limit, AccessLogFormat, Args};
use tsdb_backend::clock::SystemTime;
use tsdb_backend::http::{panics, router, AppState};
use tsdb_backend::metrics::Metrics;
use tsdb_backend::peer_auth::{PeerSecret, SecretLocation};
use tsdb_backend::replication::client::PeerClient;
use tsdb_backend::replication::shipper::Replication;
use tsdb_backend::storage::entry::Entry;
use tsdb_backend::storage::{Engine, EngineConfig, FlushPolicy, HEAD_BYTES_PER_VALUE};
use tsdb_backend::{listener, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match Args::parse_with_config() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match args.log_format {
        tsdb_backend::cli::LogFormat::Text => log.init(),
        tsdb_backend::cli::LogFormat::Json => log.json().flatten_event(true).init(),
    }
    panics::install_hook();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tsdb-backend: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the node needs to talk to its peers and its clients, read before anything starts so
/// that a bad file stops the node at once.
struct Security {
    secret: PeerSecret,
    peers: PeerClient,
    server_tls: Option<Arc<rustls::ServerConfig>>,
}

fn security(args: &Args, node_id: &str) -> anyhow::Result<Security> {
    let location = SecretLocation::resolve(
        args.peer_secret_file.as_deref(),
        std::env::var_os("HOME").as_deref(),
        &args.data_dir,
    );
    let loaded = location.load()?;
    let path = location.path().display();
    match &location {
        SecretLocation::Given(_) if loaded.open_mode != 0 => tracing::warn!(
            path = %path,
            "the peer secret file may be read by group or others: chmod 600 it"
        ),
        SecretLocation::Given(_) => {}
        SecretLocation::Home(_) if loaded.created => tracing::info!(
            path = %path,
            "created the pool's peer secret: nodes on other hosts need a copy of this file"
        ),
        SecretLocation::Home(_) => {}
        SecretLocation::DataDir(_) => tracing::warn!(
            path = %path,
            created = loaded.created,
            "HOME is not set: the pool's peer secret is in the data directory; nodes on other \
             hosts need the same file (--peer-secret-file), and wiping the data directory \
             loses it"
        ),
    }
    let peer_ca = args.peer_ca.as_deref().map(tls::PeerCa::load).transpose()?;
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::Identity::load(cert, key)?),
        _ => None,
    };
    let server_tls = identity
        .as_ref()
        .map(|id| tls::server_config(id, peer_ca.as_ref()))
        .transpose()?;
    let peers = PeerClient::new(
        node_id,
        &loaded.secret,
        &args.peers,
        peer_ca.as_ref(),
        identity.as_ref(),
    )?;
    Ok(Security {
        secret: loaded.secret,
        peers,
        server_tls,
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    let security = security(&args, &node_id)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let memory_limit = args.memory_limit.unwrap_or_else(default_memory_limit);
    tracing::info!(
        memory_limit_mib = memory_limit >> 20,
        "memory for the head and the block cache (--memory-limit)"
    );
    metrics
        .memory_limit_bytes
        .set(i64::try_from(memory_limit).unwrap_or(i64::MAX));
    let config = EngineConfig {
        data_dir: args.data_dir.clone(),
        fsync: args.fsync,
        flush: FlushPolicy {
            max_head_values: memory_limit / 2 / HEAD_BYTES_PER_VALUE,
            max_wal_bytes: args.flush_wal_bytes,
            quiet: std::time::Duration::from_nanos(args.flush_quiet.max(1_000_000) as u64),
            max_age: std::time::Duration::from_nanos(args.flush_max_age.max(1_000_000) as u64),
        },
        column_cache_bytes: memory_limit / 4,
        default_retention_ns: args.retention,
        default_shard_duration_ns: args.shard_duration,
        node_id,
        replication_backlog_bytes: (!args.peers.is_empty())
            .then_some(args.replication_backlog_bytes),
    };
    let engine = Arc::new(
        Engine::open(config, Arc::new(SystemTime), metrics)
            .with_context(|| format!("opening data directory {}", args.data_dir.display()))?,
    );
    let result = runtime.block_on(serve(args, engine.clone(), security));
    engine.shutdown().context("syncing the wal at shutdown")?;
    tracing::info!("stopped");
    result
}

async fn serve(args: Args, engine: Arc<Engine>, security: Security) -> anyhow::Result<()> {
    for name in &args.create_databases {
        if engine.catalog().database(name).is_none() {
            engine
                .log(Entry::CreateDatabase { name: name.clone() })
                .await
                .with_context(|| format!("creating database {name}"))?;
        }
    }
    let sweeper = {
        let engine = engine.clone();
        let every = std::time::Duration::from_nanos(
            args.retention_check_interval.max(1_000_000_000) as u64,
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let e = engine.clone();
                match tokio::task::spawn_blocking(move || e.enforce_retention()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(values = n, "retention removed expired data"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention sweep failed"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
            }
        })
    };
    let replication = if args.peers.is_empty() {
        None
    } else {
        if engine.was_empty() {
            match tsdb_backend::replication::bootstrap(&engine, &args.peers, &security.peers).await
            {
                Ok(Some(peer)) => tracing::info!(peer = %peer, "rebuilt from a peer's snapshot"),
                Ok(None) => {
                    tracing::warn!("empty data directory and no peer answered: starting empty")
                }
                Err(e) => anyhow::bail!("rebuilding from a peer: {e}"),
            }
        }
        let r = Replication::start(engine.clone(), &args.peers, &security.peers)
            .context("starting replication to the peers")?;
        tracing::info!(node = engine.node_id(), origin = engine.origin(), peers = ?args.peers, "replicating");
        Some(Arc::new(r))
    };
    let observer = observer(&args, &engine)?;
    let tracing_export = observer.tracing.clone();
    let state = Arc::new(AppState {
        engine,
        max_body_bytes: args.max_body_size,
        replication: replication.clone(),
        peer_secret: security.secret,
        observer,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let scheme = if security.server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(listen = %args.listen, scheme, data_dir = %args.data_dir.display(), "tsdb-backend ready");
    listener::serve(
        listener,
        security.server_tls,
        router(state),
        shutdown_signal(),
    )
    .await
    .with_context(|| format!("serving {scheme}"))?;
    sweeper.abort();
    if let Some(r) = replication {
        tokio::task::spawn_blocking(move || r.stop()).await.ok();
    }
    if let Some(t) = tracing_export {
        // The spans of the last requests go out before the process ends.
        tokio::task::spawn_blocking(move || t.shutdown()).await.ok();
    }
    Ok(())
}

/// The access log (opened again on SIGUSR1) and the span export the command line asks for.
fn observer(
    args: &Args,
    engine: &Arc<tsdb_backend::storage::Engine>,
) -> anyhow::Result<tsdb_backend::http::observe::Observer> {
    use telemetry::access_log::{AccessLog, AccessLogConfig, Format, Target};
    let access_log = match args.access_log.as_deref() {
        None => None,
        Some(to) => {
            let config = AccessLogConfig {
                format: match args.access_log_format {
                    AccessLogFormat::Json => Format::Json,
                    AccessLogFormat::Combined => Format::Combined,
                },
                to: match to {
                    "stdout" | "-" => Target::Stdout,
                    path => Target::File(path.into()),
                },
            };
            let log = AccessLog::start(&config)
                .with_context(|| format!("opening the access log {to:?}"))?;
            let reopen = log.clone();
            let mut usr1 =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                    .context("listening for SIGUSR1")?;
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    reopen.reopen();
                    tracing::info!("SIGUSR1: the access log's file is opened again");
                }
            });
            Some(log)
        }
    };
    let tracing = match args.otlp.as_deref() {
        None => None,
        Some(endpoint) => {
            let settings = telemetry::Settings {
                endpoint: endpoint.to_string(),
                sample: args.trace_sample,
                service: "tsdb-backend",
                instance: engine.node_id().to_string(),
            };
            let metrics = engine.metrics().clone();
            let observe: telemetry::ExportObserver = Arc::new(move |spans, exported| {
                let result = if exported { "exported" } else { "failed" };
                metrics
                    .trace_spans
                    .with_label_values(&[result])
                    .inc_by(spans);
            });
            let t = telemetry::Tracing::start(&settings, observe)
                .context("starting the span export")?;
            tracing::info!(
                endpoint,
                sample = args.trace_sample,
                "spans exported over OTLP"
            );
            Some(Arc::new(t))
        }
    };
    Ok(tsdb_backend::http::observe::Observer {
        access_log,
        tracing,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
