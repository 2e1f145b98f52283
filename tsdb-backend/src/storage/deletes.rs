//! Deletes as versioned tombstones.
//!
//! `DELETE FROM m WHERE time < t` and `DROP MEASUREMENT m` are logged (and replicated) like
//! writes, with the version of the node that accepted them. A tombstone hides every value
//! of its measurement (or of every measurement) in its time range whose version is older
//! than the tombstone's: values written before the delete, wherever they sit (head, a
//! frozen head, blocks) and however late they arrive (a peer's resync, a replicated write
//! that crossed the delete), while a write made after the delete is kept. The head drops
//! what a tombstone hides when it is applied; blocks are filtered as they are read, and
//! compaction leaves the hidden values out. Tombstones are kept in the manifest.

use super::catalog::{read, write};
use super::version::Version;
use serde::{Deserialize, Serialize};
use std::sync::RwLock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTombstone {
    /// `None`: every measurement of the database.
    pub measurement: Option<String>,
    /// Inclusive bounds, in nanoseconds.
    pub min_time: i64,
    pub max_time: i64,
    pub version: Version,
}

impl RangeTombstone {
    pub fn covers(&self, measurement: &str) -> bool {
        self.measurement.as_deref().is_none_or(|m| m == measurement)
    }

    /// Whether the value of `measurement` at `time`, written with `version`, is deleted.
    pub fn hides(&self, time: i64, version: Version) -> bool {
        version < self.version && (self.min_time..=self.max_time).contains(&time)
    }
}

/// The tombstones of one measurement, as a read filters by them.
#[derive(Debug, Clone, Default)]
pub struct Filter(Vec<RangeTombstone>);

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn hides(&self, time: i64, version: Version) -> bool {
        self.0.iter().any(|t| t.hides(time, version))
    }

    /// Whether some tombstone's range meets `[lo, hi]`.
    pub fn overlaps(&self, lo: i64, hi: i64) -> bool {
        self.0.iter().any(|t| t.min_time <= hi && t.max_time >= lo)
    }
}

/// The tombstones of one database.
#[derive(Debug, Default)]
pub struct Deletes {
    list: RwLock<Vec<RangeTombstone>>,
}

impl Deletes {
    pub fn add(&self, t: RangeTombstone) {
        let mut list = write(&self.list);
        if !list.contains(&t) {
            list.push(t);
        }
    }

    pub fn all(&self) -> Vec<RangeTombstone> {
        read(&self.list).clone()
    }

    pub fn is_empty(&self) -> bool {
        read(&self.list).is_empty()
    }

    /// The tombstones that concern `measurement`.
    pub fn filter(&self, measurement: &str) -> Filter {
        Filter(
            read(&self.list)
                .iter()
                .filter(|t| t.covers(measurement))
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_hides_older_versions_in_its_range_only() {
        let v = |hlc| Version { hlc, node: 1 };
        let t = RangeTombstone {
            measurement: Some("cpu".into()),
            min_time: 10,
            max_time: 20,
            version: v(5),
        };
        assert!(t.covers("cpu") && !t.covers("mem"));
        assert!(t.hides(10, v(4)) && t.hides(20, v(4)));
        assert!(!t.hides(9, v(4)) && !t.hides(21, v(4)), "outside the range");
        assert!(
            !t.hides(15, v(5)) && !t.hides(15, v(6)),
            "written at or after the delete"
        );
        let all = RangeTombstone {
            measurement: None,
            ..t
        };
        assert!(all.covers("mem"));
    }
}
