//! Assembles the running gateway from the bootstrap configuration: the reloader and its
//! policy watcher, the admin port, the drain on SIGTERM, and the Pingora server with its
//! proxy services and listeners (plaintext, h2c, TLS with ALPN h2/http1.1).
//!
//! Every listener is a service of its own, its application an [`Edge`] (its connection
//! rules) around the proxy: listeners differ in hardening settings, and Pingora enables h2c
//! per service. Every service runs `threads` worker threads.

use crate::auth::mtls::PeerCertCallback;
use crate::clock::SystemClock;
use crate::config::{Bootstrap, Listener};
use crate::connection::proxy_protocol::ProxyProtocol;
use crate::connection::Edge;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::ratelimit::global::{GlobalLimiter, RedisConfig};
use crate::ratelimit::LimitRegistry;
use crate::reload::Reloader;
use crate::shutdown::ActiveRequests;
use crate::tls::ListenerTls;
use anyhow::{anyhow, Context};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::Arc;

/// How `gateway run` starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Take the listening sockets from a running gateway (zero-downtime upgrade): start the
    /// new binary with this, then send SIGQUIT to the old one.
    pub upgrade: bool,
}

/// Read buffer of a plaintext client connection. Pingora's default is 64 KiB per
/// connection, held as long as the connection lives; an HTTP/1 head fits in 4 KiB, and
/// larger reads (bodies) bypass the buffer. Measured: the same throughput, 60 KiB less
/// memory per idle keep-alive connection (docs/benchmarks.md).
const PLAIN_READ_BUFFER: usize = 4 * 1024;

/// Read buffer of a TLS client connection: one whole TLS record (16 KiB of data plus
/// header and tag), which is what rustls asks for at most.
const TLS_READ_BUFFER: usize = 17 * 1024;

/// Pingora's settings for the gateway.
fn server_conf(bootstrap: &Bootstrap) -> ServerConf {
    // Whole seconds, rounded up, and one more: Pingora's grace period is only the backstop
    // of the drain, which ends the process itself (see `shutdown.rs`).
    let grace = bootstrap.drain_timeout.as_millis().div_ceil(1000) + 1;
    ServerConf {
        threads: bootstrap.threads,
        // Measured on this kind of machine: one worker per thread without work stealing,
        // with mimalloc, is Pingora's fastest setup (see docs/benchmarks.md).
        work_stealing: false,
        grace_period_seconds: Some(u64::try_from(grace).unwrap_or(u64::MAX)),
        graceful_shutdown_timeout_seconds: Some(1),
        upstream_keepalive_pool_size: 256,
        upgrade_sock: bootstrap.upgrade_socket.to_string_lossy().into_owned(),
        ..ServerConf::default()
    }
}

/// Every listener can be served: TLS files load, keys match their certificates, client CA
/// bundles and revocation lists parse. `gateway check` runs this too.
pub fn check_listeners(bootstrap: &Bootstrap) -> anyhow::Result<()> {
    pingora::tls::install_default_crypto_provider();
    for l in &bootstrap.listeners {
        if let Some(t) = &l.tls {
            ListenerTls::load(&l.name, t).with_context(|| format!("listener {}", l.name))?;
        }
    }
    Ok(())
}

/// TLS settings of one listener: its certificate through a swappable store, client
/// certificates through a swappable verifier (their names read when the handshake
/// completes), h2 by ALPN when the listener allows HTTP/2.
fn tls_settings(l: &Listener, tls: &ListenerTls) -> anyhow::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(PeerCertCallback))
        .map_err(|e| anyhow!("listener {}: TLS settings: {e}", l.name))?;
    settings.set_cert_resolver(tls.certs.clone());
    if let Some(v) = &tls.client {
        settings.set_client_cert_verifier(v.clone());
    }
    if l.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}

/// Starts everything and serves until SIGTERM (drain, then exit 0) or SIGINT (at once).
/// Returns only on a start-up error.
pub fn run(bootstrap: Bootstrap, options: RunOptions) -> anyhow::Result<()> {
    pingora::tls::install_default_crypto_provider();
    let metrics = Arc::new(Metrics::new().context("metrics registry")?);
    // Global limits: the Redis client starts in the background and never blocks the start.
    let redis = bootstrap.redis.as_ref().map(|r| {
        let mut config = RedisConfig::new(r.url.clone());
        config.command_timeout = r.timeout;
        let instance = format!("{}/{}", bootstrap.admin, std::process::id());
        Arc::new(GlobalLimiter::start(config, instance))
    });
    let limits = LimitRegistry::new(redis, Arc::new(SystemClock));
    let reloader = Reloader::start(bootstrap.policies.clone(), metrics.clone(), limits)
        .map_err(|e| anyhow!("{e}"))?;
    let snapshot = reloader.snapshot.clone();
    let keys = snapshot.clone();
    crate::auth::spawn_refresher(move || keys.load().auth.clone(), Arc::new(SystemClock))
        .context("starting the key-set refresher")?;
    let buckets = snapshot.clone();
    crate::ratelimit::spawn_housekeeping(move || buckets.load().limits.clone())
        .context("starting the rate-limit housekeeping")?;
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    crate::reload::names::spawn(reloader.clone(), never)
        .context("starting the resolver of backends' names")?;
    if let Err(e) = reloader.registries.upstream_tls.watch() {
        tracing::warn!(error = %e, "cannot watch the upstream TLS files; they are read at each policy load only");
    }
    if let Err(e) = crate::reload::watch::spawn(reloader.clone()) {
        tracing::warn!(error = %e, "cannot watch the policy files; reload with SIGHUP or POST /admin/reload");
    }
    let active = Arc::new(ActiveRequests::default());
    // One access log (and writer thread) for every listener; a file that cannot be opened
    // stops the start with its reason.
    let access_log = match &bootstrap.access_log {
        Some(config) => Some(
            crate::access_log::AccessLog::start(config)
                .with_context(|| format!("opening the access log ({:?})", config.to))?,
        ),
        None => None,
    };
    // One export pipeline (and thread) for every listener's spans.
    let tracing = match &bootstrap.tracing {
        Some(t) => {
            let settings = telemetry::Settings {
                endpoint: t.endpoint.clone(),
                sample: f64::from(t.sample_ppm) / 1_000_000.0,
                service: "gateway",
                instance: format!("{}/{}", bootstrap.admin, std::process::id()),
            };
            let counted = metrics.clone();
            let observe: telemetry::ExportObserver =
                Arc::new(move |spans, exported| counted.trace_export(spans, exported));
            let started = telemetry::SpanQueue::start(&settings, observe)
                .context("starting the span export")?;
            tracing::info!(endpoint = %t.endpoint, sample = t.sample_ppm as f64 / 10_000.0, "spans exported over OTLP");
            Some(Arc::new(started))
        }
        None => None,
    };
    let admin_token = match &bootstrap.admin_token_file {
        Some(path) => Some(
            crate::admin::token::AdminToken::read(path)
                .with_context(|| format!("admin.token_file {}", path.display()))?,
        ),
        None => {
            if !bootstrap.admin.ip().is_loopback() {
                tracing::warn!(admin = %bootstrap.admin, "the admin port listens beyond loopback without admin.token_file: anyone who reaches it can reload, purge and drain");
            }
            None
        }
    };
    let admin_state = crate::admin::AdminState {
        shared: Arc::new(crate::admin::shared::SharedAnswers::new(Arc::new(
            SystemClock,
        ))),
        replication: Arc::new(crate::admin::replication::ReplicationView::new(Arc::new(
            SystemClock,
        ))),
        access_log: access_log.clone(),
        token: admin_token,
        snapshot: snapshot.clone(),
        reloader: reloader.clone(),
        metrics: metrics.clone(),
        listeners: Arc::new(crate::admin::ListenerProbe::new(
            bootstrap.listeners.iter().map(|l| l.address).collect(),
        )),
    };
    // During an upgrade the old process holds the admin port until it has drained.
    let admin_patience = if options.upgrade {
        bootstrap.drain_timeout + std::time::Duration::from_secs(5)
    } else {
        std::time::Duration::ZERO
    };
    crate::admin::spawn(bootstrap.admin, admin_state, admin_patience)
        .map_err(|e| anyhow!("admin port {}: {e}", bootstrap.admin))?;

    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&bootstrap));
    server.bootstrap();
    // The last requests' spans go out before the process exits (for a second at most).
    let last_spans = tracing.clone();
    crate::shutdown::spawn_drain(
        server.watch_execution_phase(),
        active.clone(),
        bootstrap.drain_timeout,
        move || {
            if let Some(t) = last_spans {
                t.shutdown();
            }
        },
    )
    .context("starting the drain watcher")?;

    // One client (and connection pool) for every listener's background cache refreshes.
    let own_client = Arc::new(crate::fetch::OwnClient::new());
    let mut watched = Vec::new();
    // One service per listener: each has its own hardening (connection limits and request
    // rules), and Pingora takes h2c per service.
    for l in &bootstrap.listeners {
        let gateway = Gateway {
            snapshot: snapshot.clone(),
            metrics: metrics.clone(),
            active: active.clone(),
            own_client: own_client.clone(),
            listener: Arc::from(l.name.as_str()),
            hardening: l.hardening.clone(),
            clock: Arc::new(crate::clock::SystemClock),
            access_log: access_log.clone(),
            tracing: tracing.clone(),
        };
        let mut proxy = http_proxy(&server.configuration, gateway);
        let h2c = l.tls.is_none() && l.http2;
        if h2c {
            let mut o = HttpServerOptions::default();
            o.h2c = true;
            proxy.server_options = Some(o);
        }
        let mut edge = Edge::new(proxy, &l.name, l.hardening.clone(), metrics.clone(), h2c);
        // The PROXY header comes first: before HTTP on plaintext, before the handshake on TLS.
        let proxy_protocol = l
            .hardening
            .proxy_protocol
            .then(|| Arc::new(ProxyProtocol::new(&l.name, &l.hardening, metrics.clone())));
        if let (Some(pp), None) = (&proxy_protocol, &l.tls) {
            edge = edge.with_proxy_protocol(pp.clone());
        }
        let mut service = Service::new(format!("listener {}", l.name), edge);
        if let (Some(pp), Some(_)) = (proxy_protocol, &l.tls) {
            service.endpoints().set_pre_tls_callback(pp);
        }
        let endpoint = ListenerConfig::tcp(l.address.to_string());
        let endpoint = match &l.tls {
            Some(files) => {
                let tls = Arc::new(
                    ListenerTls::load(&l.name, files)
                        .with_context(|| format!("listener {}", l.name))?,
                );
                let settings = tls_settings(l, &tls)?;
                watched.push(tls);
                endpoint
                    .tls(settings)
                    .l4_buffer(L4BufferSettings::default().read(TLS_READ_BUFFER))
            }
            None => endpoint.l4_buffer(L4BufferSettings::default().read(PLAIN_READ_BUFFER)),
        };
        service.add_listener(endpoint);
        tracing::info!(listener = %l.name, address = %l.address, tls = l.tls.is_some(), http2 = l.http2, proxy_protocol = l.hardening.proxy_protocol, "listening");
        server.add_service(service);
    }
    if let Err(e) = crate::tls::watch(watched) {
        tracing::warn!(error = %e, "cannot watch the TLS files; certificates and CAs are read at start only");
    }
    server.run_forever()
}
