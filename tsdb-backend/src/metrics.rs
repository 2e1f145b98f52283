//! Prometheus metrics of the node, rendered as text at `GET /metrics`.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric the node exports. Cheap to clone-free share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub points_written: IntCounter,
    pub points_rejected: IntCounter,
    pub write_requests: IntCounterVec,
    pub write_duration: Histogram,
    pub query_requests: IntCounterVec,
    pub query_duration: Histogram,
    pub wal_bytes: IntGauge,
    pub wal_fsyncs: IntCounter,
    pub wal_fsync_duration: Histogram,
    pub wal_group_size: Histogram,
    pub checkpoints: IntCounter,
    pub compactions: IntCounter,
    /// Writes refused with 503 because the head was over its budget.
    pub writes_refused_overload: IntCounter,
    pub head_values: IntGauge,
    pub blocks: IntGauge,
    pub block_bytes: IntGauge,
    pub blocks_damaged: IntGauge,
    pub column_cache_bytes: IntGauge,
    pub retention_dropped_rows: IntCounter,
    pub replication_lag_entries: IntGaugeVec,
    pub replication_lag_seconds: GaugeVec,
    pub replication_backlog_bytes: IntGaugeVec,
    pub replication_resyncing: IntGaugeVec,
    pub replication_shipped: IntGaugeVec,
    pub replication_resyncs: IntGaugeVec,
    /// Internal requests refused for a missing or wrong pool secret, by `reason`.
    pub peer_auth_failures: IntCounterVec,
    /// Requests whose handler panicked (answered 500).
    pub http_panics: IntCounter,
    /// Access-log lines dropped because the writer was behind (`--access-log`).
    pub access_log_dropped: IntCounter,
    /// Spans sent to the OTLP collector (`--otlp`), by `result`: exported or failed.
    pub trace_spans: IntCounterVec,
}

fn buckets() -> Vec<f64> {
    vec![
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram =
            |name: &str, help: &str, b: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(b))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let write_requests = IntCounterVec::new(
            Opts::new("tsdb_write_requests_total", "Write requests by HTTP status"),
            &["code"],
        )?;
        registry.register(Box::new(write_requests.clone()))?;
        let query_requests = IntCounterVec::new(
            Opts::new("tsdb_query_requests_total", "Query requests by HTTP status"),
            &["code"],
        )?;
        registry.register(Box::new(query_requests.clone()))?;
        let peer_auth_failures = IntCounterVec::new(
            Opts::new(
                "tsdb_peer_auth_failures_total",
                "Internal requests refused for a missing or wrong pool secret",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(peer_auth_failures.clone()))?;
        // Both series exist from the start, so an alert on their rate sees a zero first.
        for reason in ["missing", "wrong"] {
            peer_auth_failures.with_label_values(&[reason]);
        }
        let per_peer = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["peer"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let replication_lag_seconds = GaugeVec::new(
            Opts::new(
                "tsdb_replication_lag_seconds",
                "Age of the oldest local entry a peer has not acknowledged",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(replication_lag_seconds.clone()))?;
        let replication_lag_entries = per_peer(
            "tsdb_replication_lag_entries",
            "Local entries (write batches, DDL) a peer has not acknowledged",
        )?;
        let replication_backlog_bytes = per_peer(
            "tsdb_replication_backlog_bytes",
            "Bytes of local entries a peer has not acknowledged",
        )?;
        let replication_resyncing = per_peer(
            "tsdb_replication_resyncing",
            "1 while a peer lacks entries the backlog no longer holds and is being resynchronised",
        )?;
        let replication_shipped = per_peer(
            "tsdb_replication_shipped_entries",
            "Local entries shipped to a peer since start",
        )?;
        let replication_resyncs = per_peer(
            "tsdb_replication_resyncs",
            "Full resynchronisations of a peer since start",
        )?;
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "tsdb_trace_spans_total",
                "Spans sent to the OTLP collector, by result (exported or failed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(trace_spans.clone()))?;
        let wal_bytes = IntGauge::new("tsdb_wal_bytes", "Bytes in live WAL segments")?;
        registry.register(Box::new(wal_bytes.clone()))?;
        Ok(Metrics {
            points_written: counter("tsdb_points_written_total", "Points acknowledged durable")?,
            points_rejected: counter(
                "tsdb_points_rejected_total",
                "Points refused (parse error, type conflict, retention)",
            )?,
            write_requests,
            write_duration: histogram(
                "tsdb_write_duration_seconds",
                "Time from request to acknowledgement of a write",
                buckets(),
            )?,
            query_requests,
            query_duration: histogram(
                "tsdb_query_duration_seconds",
                "Time to answer a query request",
                buckets(),
            )?,
            wal_bytes,
            wal_fsyncs: counter("tsdb_wal_fsyncs_total", "WAL fsync calls")?,
            wal_fsync_duration: histogram(
                "tsdb_wal_fsync_duration_seconds",
                "Time of one WAL append + fsync",
                buckets(),
            )?,
            wal_group_size: histogram(
                "tsdb_wal_group_commit_records",
                "Records made durable by one fsync (group commit)",
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            )?,
            checkpoints: counter(
                "tsdb_checkpoints_total",
                "Flushes of the head into blocks (each lets the WAL be trimmed)",
            )?,
            compactions: counter(
                "tsdb_compactions_total",
                "Merges of small blocks of a partition into one",
            )?,
            writes_refused_overload: counter(
                "tsdb_writes_refused_overload_total",
                "Writes answered 503 because the head was over its memory budget",
            )?,
            head_values: gauge("tsdb_head_values", "Values in the in-memory head")?,
            blocks: gauge("tsdb_blocks", "Blocks on disk")?,
            block_bytes: gauge("tsdb_block_bytes", "Bytes of the blocks on disk")?,
            blocks_damaged: gauge(
                "tsdb_blocks_damaged",
                "Files set aside because they failed their checks",
            )?,
            column_cache_bytes: gauge(
                "tsdb_column_cache_bytes",
                "Bytes of decoded block columns in the cache",
            )?,
            retention_dropped_rows: counter(
                "tsdb_retention_dropped_rows_total",
                "Rows removed by retention enforcement",
            )?,
            replication_lag_entries,
            replication_lag_seconds,
            replication_backlog_bytes,
            replication_resyncing,
            replication_shipped,
            replication_resyncs,
            peer_auth_failures,
            http_panics: counter(
                "tsdb_http_panics_total",
                "Requests whose handler panicked (answered 500)",
            )?,
            access_log_dropped: counter(
                "tsdb_access_log_dropped_total",
                "Access-log lines dropped because the writer was behind",
            )?,
            trace_spans,
            registry,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
