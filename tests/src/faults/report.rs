//! The row a fault test leaves for `docs/reliability.md`: what was written and
//! acknowledged, what the checker found, how requests failed during the fault, how long the
//! pool took to converge, and what an operator saw meanwhile.
//!
//! Printed on stderr always; written as `<dir>/<fault>.json` when `FAULTS_REPORT_DIR` is
//! set (`scripts/faults.sh` sets it and turns the rows into the report).

use std::collections::BTreeMap;

use super::checker::{by_outcome, Verdict};
use super::workload::Log;

/// One fault's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FaultReport {
    /// Short name, as the report's rows are sorted and linked by it.
    pub fault: String,
    /// What was done, in an operator's words.
    pub description: String,
    pub write_requests: usize,
    pub acknowledged_points: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub phantom: usize,
    /// Write requests by how they ended (status, or the kind of missing answer).
    pub writes: BTreeMap<String, u64>,
    /// Queries by how they ended.
    pub reads: BTreeMap<String, u64>,
    /// From the heal to every node agreeing, in milliseconds.
    pub converge_ms: u64,
    /// What `/health`, `/admin/status` and the metrics showed during the fault.
    pub observed: Vec<String>,
    /// Anything else measured (failover time, refused window).
    pub notes: Vec<String>,
}

impl FaultReport {
    /// A row from the workload's log and the checker's verdict.
    pub fn new(fault: &str, description: &str, log: &Log, verdict: &Verdict) -> FaultReport {
        FaultReport {
            fault: fault.into(),
            description: description.into(),
            write_requests: log.writes.len(),
            acknowledged_points: verdict.acknowledged_points,
            lost: verdict.lost(),
            duplicated: verdict.duplicated(),
            phantom: verdict.phantom(),
            writes: by_outcome(log.writes.iter().map(|a| &a.outcome)),
            reads: by_outcome(log.reads.iter().map(|r| &r.outcome)),
            ..FaultReport::default()
        }
    }

    /// Prints the row, and writes it where `FAULTS_REPORT_DIR` says.
    pub fn publish(&self) {
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        eprintln!("fault report:\n{json}");
        if let Some(dir) = std::env::var_os("FAULTS_REPORT_DIR") {
            let dir = std::path::PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{}.json", self.fault));
            if let Err(e) = std::fs::write(&path, json) {
                eprintln!("cannot write {}: {e}", path.display());
            }
        }
    }
}
