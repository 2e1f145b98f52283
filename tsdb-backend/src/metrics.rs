//! Prometheus metrics of the node, rendered as text at `GET /metrics`.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The label of an HTTP status code, the same in the gateway's metrics.
pub const STATUS_LABEL: &str = "status";

/// Every metric the node exports. Cheap to clone-free share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub points_written: IntCounter,
    pub points_rejected: IntCounter,
    /// `tsdb_write_requests_total{status}`.
    pub write_requests: IntCounterVec,
    pub write_duration: Histogram,
    /// `tsdb_query_requests_total{status}`.
    pub query_requests: IntCounterVec,
    pub query_duration: Histogram,
    pub wal_bytes: IntGauge,
    /// `tsdb_wal_failed`: 1 once a WAL append or fsync failed (the node then refuses
    /// writes until it is restarted), else 0.
    pub wal_failed: IntGauge,
    /// `tsdb_disk_full`: 1 while the data directory's file system is full (writes are
    /// refused with 507 until space is freed), else 0.
    pub disk_full: IntGauge,
    /// `tsdb_wal_out_of_space_total`: groups of writes refused because the disk was full.
    pub wal_out_of_space: IntCounter,
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
    /// `tsdb_memory_limit_bytes`: `--memory-limit`, what the head and the block cache are
    /// budgeted within.
    pub memory_limit_bytes: IntGauge,
    /// `tsdb_memory_used_bytes`: the head's estimated bytes plus the block cache's, the
    /// memory `--memory-limit` bounds (writes are refused when the head alone reaches it).
    pub memory_used_bytes: IntGauge,
    pub retention_dropped_rows: IntCounter,
    pub replication_lag_entries: IntGaugeVec,
    pub replication_lag_seconds: GaugeVec,
    pub replication_backlog_bytes: IntGaugeVec,
    pub replication_resyncing: IntGaugeVec,
    /// `tsdb_replication_shipped_entries_total{peer}`, brought up to the shipper's own count
    /// at each scrape.
    pub replication_shipped: IntCounterVec,
    /// `tsdb_replication_resyncs_total{peer}`, the same way.
    pub replication_resyncs: IntCounterVec,
    /// Internal requests refused for a missing or wrong pool secret, by `reason`.
    pub peer_auth_failures: IntCounterVec,
    /// Requests whose handler panicked (answered 500).
    pub http_panics: IntCounter,
    /// Access-log lines dropped because the writer was behind (`--access-log`).
    pub access_log_dropped: IntCounter,
    /// Spans sent to the OTLP collector (`--otlp`), by `result`: exported or failed.
    pub trace_spans: IntCounterVec,
}

/// What a peer's shipper reports, as the metrics take it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerFigures {
    pub lag_entries: u64,
    pub lag_seconds: f64,
    pub backlog_bytes: u64,
    pub resyncing: bool,
    pub shipped_entries: u64,
    pub resyncs: u64,
}

/// What the storage reports at a scrape, as the metrics take it.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageFigures {
    pub head_values: u64,
    pub head_bytes_estimate: u64,
    pub column_cache_bytes: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub damaged_files: u64,
    pub wal_failed: bool,
    pub disk_full: bool,
}

/// Moves a counter up to `total`, a count kept elsewhere that only grows.
fn bring_up(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
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
            &[STATUS_LABEL],
        )?;
        registry.register(Box::new(write_requests.clone()))?;
        let query_requests = IntCounterVec::new(
            Opts::new("tsdb_query_requests_total", "Query requests by HTTP status"),
            &[STATUS_LABEL],
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
        let per_peer_counter =
            |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), &["peer"])?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let replication_shipped = per_peer_counter(
            "tsdb_replication_shipped_entries_total",
            "Local entries shipped to a peer since start",
        )?;
        let replication_resyncs = per_peer_counter(
            "tsdb_replication_resyncs_total",
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
            wal_failed: gauge(
                "tsdb_wal_failed",
                "1 once a WAL append or fsync failed: writes are refused until the node restarts",
            )?,
            disk_full: gauge(
                "tsdb_disk_full",
                "1 while the data directory is full: writes are refused until space is freed",
            )?,
            wal_out_of_space: counter(
                "tsdb_wal_out_of_space_total",
                "Groups of writes refused (and cut off the WAL) because the disk was full",
            )?,
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
            memory_limit_bytes: gauge(
                "tsdb_memory_limit_bytes",
                "The memory budget of the head and the block cache (--memory-limit)",
            )?,
            memory_used_bytes: gauge(
                "tsdb_memory_used_bytes",
                "The head's estimated bytes plus the block cache's: what --memory-limit bounds",
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

    /// One peer's replication figures, as its shipper reports them at a scrape: the lag
    /// gauges set, the counters brought up to the shipper's own totals (which only grow).
    pub fn peer_replication(&self, peer: &str, figures: PeerFigures) {
        let peer = [peer];
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.replication_lag_entries
            .with_label_values(&peer)
            .set(gauge(figures.lag_entries));
        self.replication_lag_seconds
            .with_label_values(&peer)
            .set(figures.lag_seconds);
        self.replication_backlog_bytes
            .with_label_values(&peer)
            .set(gauge(figures.backlog_bytes));
        self.replication_resyncing
            .with_label_values(&peer)
            .set(i64::from(figures.resyncing));
        bring_up(
            &self.replication_shipped.with_label_values(&peer),
            figures.shipped_entries,
        );
        bring_up(
            &self.replication_resyncs.with_label_values(&peer),
            figures.resyncs,
        );
    }

    /// The storage's gauges at a scrape: memory against its budget, blocks, damage, and
    /// whether the WAL still takes writes.
    pub fn storage_gauges(&self, storage: StorageFigures) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.head_values.set(gauge(storage.head_values));
        self.blocks.set(gauge(storage.blocks));
        self.block_bytes.set(gauge(storage.block_bytes));
        self.column_cache_bytes
            .set(gauge(storage.column_cache_bytes));
        self.memory_used_bytes.set(gauge(
            storage
                .head_bytes_estimate
                .saturating_add(storage.column_cache_bytes),
        ));
        self.blocks_damaged.set(gauge(storage.damaged_files));
        self.wal_failed.set(i64::from(storage.wal_failed));
        self.disk_full.set(i64::from(storage.disk_full));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_are_labelled_by_status_as_in_the_gateway() {
        let m = Metrics::new().unwrap();
        m.write_requests.with_label_values(&["204"]).inc();
        m.query_requests.with_label_values(&["400"]).inc_by(2);
        let text = m.render();
        assert!(
            text.contains("tsdb_write_requests_total{status=\"204\"} 1"),
            "{text}"
        );
        assert!(text.contains("tsdb_query_requests_total{status=\"400\"} 2"));
        assert!(!text.contains("code="), "{text}");
    }

    #[test]
    fn shipped_entries_and_resyncs_are_counters_brought_up_to_the_shippers_totals() {
        let m = Metrics::new().unwrap();
        let peer = "http://127.0.0.1:8087";
        let mut figures = PeerFigures {
            lag_entries: 3,
            lag_seconds: 1.5,
            backlog_bytes: 300,
            resyncing: false,
            shipped_entries: 10,
            resyncs: 1,
        };
        m.peer_replication(peer, figures);
        m.peer_replication(peer, figures);
        figures.shipped_entries = 25;
        figures.lag_entries = 0;
        m.peer_replication(peer, figures);
        let text = m.render();
        assert!(
            text.contains("# TYPE tsdb_replication_shipped_entries_total counter"),
            "{text}"
        );
        assert!(text
            .contains("tsdb_replication_shipped_entries_total{peer=\"http://127.0.0.1:8087\"} 25"));
        assert!(text.contains("# TYPE tsdb_replication_resyncs_total counter"));
        assert!(text.contains("tsdb_replication_resyncs_total{peer=\"http://127.0.0.1:8087\"} 1"));
        assert!(text.contains("tsdb_replication_lag_entries{peer=\"http://127.0.0.1:8087\"} 0"));
        assert!(text.contains("tsdb_replication_lag_seconds{peer=\"http://127.0.0.1:8087\"} 1.5"));
        // A total reported lower (never, from one shipper) does not move a counter back.
        figures.shipped_entries = 5;
        m.peer_replication(peer, figures);
        assert_eq!(m.replication_shipped.with_label_values(&[peer]).get(), 25);
    }

    #[test]
    fn memory_in_use_is_the_head_estimate_plus_the_cache_against_the_limit() {
        let m = Metrics::new().unwrap();
        m.memory_limit_bytes.set(256 << 20);
        let text = m.render();
        assert!(text.contains("tsdb_wal_failed 0"), "{text}");
        assert!(text.contains("tsdb_memory_used_bytes 0"));
        m.storage_gauges(StorageFigures {
            head_values: 1_000,
            head_bytes_estimate: 100_000,
            column_cache_bytes: 5_000,
            blocks: 2,
            block_bytes: 4_096,
            damaged_files: 1,
            wal_failed: true,
            disk_full: false,
        });
        let text = m.render();
        assert!(text.contains("tsdb_memory_used_bytes 105000"), "{text}");
        assert!(text.contains("tsdb_memory_limit_bytes 268435456"));
        assert!(text.contains("tsdb_head_values 1000"));
        assert!(text.contains("tsdb_blocks_damaged 1"));
        assert!(text.contains("tsdb_wal_failed 1"));
    }
}
