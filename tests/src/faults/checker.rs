//! The checker: after a fault heals and the pool converges, what every node holds is
//! compared with what the clients wrote.
//!
//! Every point the workload writes has a unique id; its time and value are functions of the
//! id ([`time_of`], [`value_of`]), so a row can be traced back to the one write it came
//! from. The checker asserts, per node:
//!
//! - every acknowledged point (its write answered 204) is there (**lost** otherwise);
//! - no id is there twice (**duplicated**);
//! - every row is a point some client sent, with the time and value it was sent with
//!   (**phantom** otherwise). A write that failed or timed out may or may not have landed
//!   (a timeout says nothing), so its points are allowed either way.
//!
//! Pure functions over plain data: the unit tests below feed it the mistakes it exists to
//! catch.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Nanoseconds between the times of two consecutive ids.
const NS_PER_ID: i64 = 1_000;

/// The time of point `id`: `base_ns` plus a microsecond per id.
pub fn time_of(base_ns: i64, id: u64) -> i64 {
    base_ns + id as i64 * NS_PER_ID
}

/// The value of point `id` (an integer field, compared exactly).
pub fn value_of(id: u64) -> i64 {
    (id.wrapping_mul(2_654_435_761) % 1_000_003) as i64
}

/// One write request of the workload: the ids it carried and how it ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub ids: Vec<u64>,
    pub outcome: Outcome,
    /// Milliseconds since the workload started.
    pub at_ms: u64,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No answer: refused, reset, timed out.
    Error(String),
}

impl Outcome {
    /// Acknowledged: the write promised its points are stored.
    pub fn acknowledged(&self) -> bool {
        *self == Outcome::Status(204)
    }

    /// How the report groups it: the status (`"204"`, `"503"`), or the error's kind.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Error(e) => {
                let e = e.to_ascii_lowercase();
                let kind = if e.contains("timed out") || e.contains("timeout") {
                    "timeout"
                } else if e.contains("refused") {
                    "refused"
                } else if e.contains("reset") || e.contains("closed") || e.contains("broken") {
                    "reset"
                } else {
                    "error"
                };
                format!("no answer ({kind})")
            }
        }
    }
}

/// One row a node answered: time, `id` and `v` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub time_ns: i64,
    pub id: u64,
    pub value: i64,
}

/// What the checker found on one node.
#[derive(Debug, Clone, Default)]
pub struct NodeVerdict {
    pub node: String,
    pub rows: usize,
    /// Acknowledged ids the node does not hold.
    pub lost: Vec<u64>,
    /// Ids the node holds more than once.
    pub duplicated: Vec<u64>,
    /// Rows no client wrote (unknown id, or a time or value other than the one sent).
    pub phantom: Vec<Row>,
}

/// The checker's answer for the whole pool.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub attempts: usize,
    pub acknowledged_points: usize,
    pub nodes: Vec<NodeVerdict>,
}

impl Verdict {
    /// True when no node lost, duplicated or invented a point.
    pub fn holds(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.lost.is_empty() && n.duplicated.is_empty() && n.phantom.is_empty())
    }

    /// Lost points summed over the nodes.
    pub fn lost(&self) -> usize {
        self.nodes.iter().map(|n| n.lost.len()).sum()
    }

    /// Duplicated ids summed over the nodes.
    pub fn duplicated(&self) -> usize {
        self.nodes.iter().map(|n| n.duplicated.len()).sum()
    }

    /// Phantom rows summed over the nodes.
    pub fn phantom(&self) -> usize {
        self.nodes.iter().map(|n| n.phantom.len()).sum()
    }

    /// One line per node, at most a few ids each, for a failure message.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} write requests, {} points acknowledged\n",
            self.attempts, self.acknowledged_points
        );
        for n in &self.nodes {
            out += &format!(
                "  {}: {} rows, lost {} {:?}, duplicated {} {:?}, phantom {} {:?}\n",
                n.node,
                n.rows,
                n.lost.len(),
                &n.lost[..n.lost.len().min(5)],
                n.duplicated.len(),
                &n.duplicated[..n.duplicated.len().min(5)],
                n.phantom.len(),
                &n.phantom[..n.phantom.len().min(3)],
            );
        }
        out
    }
}

/// Compares what every node holds with what the clients wrote (see the module's doc).
pub fn check(base_ns: i64, attempts: &[Attempt], nodes: &[(String, Vec<Row>)]) -> Verdict {
    let mut acknowledged = HashSet::new();
    let mut sent = HashSet::new();
    for a in attempts {
        for id in &a.ids {
            sent.insert(*id);
            if a.outcome.acknowledged() {
                acknowledged.insert(*id);
            }
        }
    }
    let mut verdict = Verdict {
        attempts: attempts.len(),
        acknowledged_points: acknowledged.len(),
        nodes: Vec::new(),
    };
    for (node, rows) in nodes {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        let mut phantom = Vec::new();
        for r in rows {
            *seen.entry(r.id).or_default() += 1;
            let genuine = sent.contains(&r.id)
                && r.time_ns == time_of(base_ns, r.id)
                && r.value == value_of(r.id);
            if !genuine {
                phantom.push(*r);
            }
        }
        let mut lost: Vec<u64> = acknowledged
            .iter()
            .filter(|id| !seen.contains_key(id))
            .copied()
            .collect();
        lost.sort_unstable();
        let mut duplicated: Vec<u64> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        duplicated.sort_unstable();
        verdict.nodes.push(NodeVerdict {
            node: node.clone(),
            rows: rows.len(),
            lost,
            duplicated,
            phantom,
        });
    }
    verdict
}

/// Requests by how they ended ([`Outcome::label`]), for the report.
pub fn by_outcome<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for o in outcomes {
        *out.entry(o.label()).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: i64 = 1_700_000_000_000_000_000;

    fn row(id: u64) -> Row {
        Row {
            time_ns: time_of(BASE, id),
            id,
            value: value_of(id),
        }
    }

    fn attempt(ids: &[u64], outcome: Outcome) -> Attempt {
        Attempt {
            ids: ids.to_vec(),
            outcome,
            at_ms: 0,
        }
    }

    fn writes() -> Vec<Attempt> {
        vec![
            attempt(&[1, 2], Outcome::Status(204)),
            attempt(&[3], Outcome::Status(503)),
            attempt(&[4], Outcome::Error("timed out".into())),
            attempt(&[5], Outcome::Status(204)),
        ]
    }

    #[test]
    fn every_acknowledged_point_once_and_unacknowledged_ones_either_way_holds() {
        let nodes = vec![
            ("a".to_string(), vec![row(1), row(2), row(5)]),
            // A write that timed out did land here: allowed.
            ("b".to_string(), vec![row(1), row(2), row(4), row(5)]),
        ];
        let v = check(BASE, &writes(), &nodes);
        assert!(v.holds(), "{}", v.describe());
        assert_eq!(v.acknowledged_points, 3);
    }

    #[test]
    fn a_missing_acknowledged_point_is_lost_on_that_node_only() {
        let nodes = vec![
            ("a".to_string(), vec![row(1), row(2), row(5)]),
            ("b".to_string(), vec![row(1), row(5)]),
        ];
        let v = check(BASE, &writes(), &nodes);
        assert!(!v.holds());
        assert!(v.nodes[0].lost.is_empty());
        assert_eq!(v.nodes[1].lost, vec![2]);
        assert_eq!(v.lost(), 1);
    }

    #[test]
    fn an_id_held_twice_is_duplicated() {
        let mut again = row(2);
        again.time_ns += 1;
        let nodes = vec![("a".to_string(), vec![row(1), row(2), again, row(5)])];
        let v = check(BASE, &writes(), &nodes);
        assert_eq!(v.nodes[0].duplicated, vec![2]);
        // Its time is not the one sent either.
        assert_eq!(v.nodes[0].phantom, vec![again]);
    }

    #[test]
    fn an_unknown_id_or_an_altered_value_is_phantom() {
        let mut altered = row(5);
        altered.value += 1;
        let nodes = vec![("a".to_string(), vec![row(1), row(2), altered, row(99)])];
        let v = check(BASE, &writes(), &nodes);
        assert_eq!(v.nodes[0].phantom, vec![altered, row(99)]);
        assert!(v.nodes[0].lost.is_empty(), "id 5 is there, if altered");
        assert!(!v.holds());
    }

    #[test]
    fn outcomes_are_grouped_by_status_and_by_kind_of_error() {
        let outcomes = [
            Outcome::Status(204),
            Outcome::Status(204),
            Outcome::Status(507),
            Outcome::Error("connection refused".into()),
            Outcome::Error("operation timed out".into()),
        ];
        let m = by_outcome(&outcomes);
        assert_eq!(m["204"], 2);
        assert_eq!(m["507"], 1);
        assert_eq!(m["no answer (refused)"], 1);
        assert_eq!(m["no answer (timeout)"], 1);
    }
}
