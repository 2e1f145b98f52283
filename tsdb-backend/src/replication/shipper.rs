//! One thread per peer ships this node's entries to it, in order, in batches.
//!
//! The loop: take the entries after the peer's cursor from the backlog, POST them to the
//! peer's `/internal/replicate`, and move the cursor to what the peer says it has applied.
//! A failure waits with exponential backoff and full jitter. When the peer needs entries the
//! backlog no longer holds, the peer is resynchronised (`transfer.rs`): this node's
//! catalog, the blocks the peer lacks and the head are sent and merged there.
//!
//! A peer that answers `401` refuses this node's proof of membership: the pool's secrets
//! differ. The link shows `unauthorized` in `/health`, one error line says so when the link
//! turns so, and the shipper keeps retrying with its usual backoff; the cursor stays where
//! it is, so nothing is lost once the secrets agree.

use super::backoff::backoff;
use super::client::PeerClient;
use super::transfer::TransferError;
use crate::storage::log_tail::{Backlog, Gap, Item};
use crate::storage::Engine;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Most bytes of entries in one replicate request.
const BATCH_BYTES: u64 = 4 << 20;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest wait for a peer to answer a replicate request.
const REPLICATE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How the link to a peer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not reached yet.
    Connecting,
    /// The last request succeeded.
    Ok,
    /// The last request failed; retrying with backoff.
    Retrying,
    /// The peer refused this node's pool secret (401): the secrets differ. Retrying with
    /// backoff, since an operator may fix either side without restarting this one.
    Unauthorized,
    /// The peer lacks entries the backlog no longer holds: a resync is under way.
    Resyncing,
}

/// What is known of one peer.
#[derive(Debug)]
pub struct Peer {
    pub url: String,
    /// The highest of this node's sequence numbers the peer has applied.
    cursor: AtomicU64,
    status: Mutex<Status>,
}

#[derive(Debug, Clone)]
struct Status {
    state: LinkState,
    last_error: Option<String>,
    /// The failing state last logged, until a request succeeds: a resync that fails
    /// passes through `Resyncing` on every retry, and must not log its failure each time.
    logged_failure: Option<LinkState>,
    shipped_entries: u64,
    resyncs: u64,
}

/// A peer's replication state, for `/health` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub url: String,
    pub state: LinkState,
    pub cursor: u64,
    /// Entries the peer has not acknowledged.
    pub lag_entries: u64,
    /// Age of the oldest of them.
    pub lag_seconds: f64,
    /// Bytes of them.
    pub backlog_bytes: u64,
    pub shipped_entries: u64,
    pub resyncs: u64,
    pub last_error: Option<String>,
}

impl Peer {
    pub fn new(url: &str, cursor: u64) -> Peer {
        Peer {
            url: url.trim_end_matches('/').to_string(),
            cursor: AtomicU64::new(cursor),
            status: Mutex::new(Status {
                state: LinkState::Connecting,
                last_error: None,
                logged_failure: None,
                shipped_entries: 0,
                resyncs: 0,
            }),
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::SeqCst)
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn report(&self, backlog: &Backlog, now_ns: i64) -> PeerReport {
        let cursor = self.cursor();
        let pending = backlog.pending(cursor);
        let st = self.status().clone();
        PeerReport {
            url: self.url.clone(),
            state: st.state,
            cursor,
            lag_entries: pending.entries,
            lag_seconds: pending
                .oldest_at_ns
                .map_or(0.0, |t| (now_ns - t).max(0) as f64 / 1e9),
            backlog_bytes: pending.bytes,
            shipped_entries: st.shipped_entries,
            resyncs: st.resyncs,
            last_error: st.last_error,
        }
    }
}

/// The body of a replicate request: `seq: u64 LE | len: u32 LE | payload` per entry.
pub fn encode_frames(items: &[Item]) -> Vec<u8> {
    let total: usize = items.iter().map(|i| i.payload.len() + 12).sum();
    let mut out = Vec::with_capacity(total);
    for i in items {
        out.extend_from_slice(&i.seq.to_le_bytes());
        out.extend_from_slice(&(i.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&i.payload);
    }
    out
}

/// Decodes a replicate request body; `None` if it is malformed.
pub fn decode_frames(mut body: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 12 {
            return None;
        }
        let seq = u64::from_le_bytes(body[..8].try_into().ok()?);
        let len = u32::from_le_bytes(body[8..12].try_into().ok()?) as usize;
        body = &body[12..];
        if body.len() < len {
            return None;
        }
        out.push((seq, body[..len].to_vec()));
        body = &body[len..];
    }
    Some(out)
}

/// What a peer answers to replicate and resync requests.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Ack {
    pub applied: u64,
}

/// The cursors of all peers, persisted so a restart does not re-send everything (re-sent
/// entries would be skipped by the peer anyway: this only saves work).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cursors {
    pub origin: String,
    pub cursors: std::collections::BTreeMap<String, u64>,
}

impl Cursors {
    pub fn load(path: &std::path::Path, origin: &str) -> Cursors {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Cursors>(&b).ok())
            .filter(|c| c.origin == origin)
            .unwrap_or_else(|| Cursors {
                origin: origin.to_string(),
                ..Cursors::default()
            })
    }

    fn save(&self, path: &std::path::Path) {
        let tmp = path.with_extension("tmp");
        let res = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(error = %e, path = %path.display(), "saving replication cursors");
        }
    }
}

/// Ships to every peer until stopped.
#[derive(Debug)]
pub struct Replication {
    peers: Vec<Arc<Peer>>,
    backlog: Arc<Backlog>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Replication {
    /// Starts one shipper thread per peer, calling them through `client`.
    pub fn start(
        engine: Arc<Engine>,
        peer_urls: &[String],
        client: &PeerClient,
    ) -> std::io::Result<Replication> {
        let backlog = engine
            .backlog()
            .cloned()
            .ok_or_else(|| std::io::Error::other("the engine keeps no replication backlog"))?;
        let cursors_path = engine.data_dir().join("replication-cursors.json");
        let saved = Cursors::load(&cursors_path, engine.origin());
        let peers: Vec<Arc<Peer>> = peer_urls
            .iter()
            .map(|u| {
                let url = u.trim_end_matches('/');
                Arc::new(Peer::new(url, saved.cursors.get(url).copied().unwrap_or(0)))
            })
            .collect();
        let shared_cursors = Arc::new(Mutex::new(saved));
        let all = Arc::new(peers.clone());
        engine.set_replication_floor(peers.iter().map(|p| p.cursor()).min().unwrap_or(u64::MAX));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for peer in &peers {
            let ship = Shipper {
                peer: peer.clone(),
                all: all.clone(),
                engine: engine.clone(),
                backlog: backlog.clone(),
                stop: stop.clone(),
                cursors: shared_cursors.clone(),
                cursors_path: cursors_path.clone(),
                agent: client.agent(Duration::from_secs(2), Duration::from_secs(120)),
                client: client.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ship-{}", peer.url))
                    .spawn(move || ship.run())?,
            );
        }
        Ok(Replication {
            peers,
            backlog,
            stop,
            threads: Mutex::new(threads),
        })
    }

    pub fn reports(&self, now_ns: i64) -> Vec<PeerReport> {
        self.peers
            .iter()
            .map(|p| p.report(&self.backlog, now_ns))
            .collect()
    }

    /// Stops the shippers (they finish their current request first).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.backlog.wake_all();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

struct Shipper {
    peer: Arc<Peer>,
    /// Every peer, for the floor of their cursors.
    all: Arc<Vec<Arc<Peer>>>,
    engine: Arc<Engine>,
    backlog: Arc<Backlog>,
    stop: Arc<AtomicBool>,
    cursors: Arc<Mutex<Cursors>>,
    cursors_path: PathBuf,
    agent: ureq::Agent,
    client: PeerClient,
}

/// Why a request to the peer did not succeed.
#[derive(Debug)]
enum SendError {
    /// The peer has applied less than the cursor claims: resume from here.
    Behind(u64),
    /// The peer refused this node's credentials (401).
    Unauthorized(String),
    Failed(String),
}

impl Shipper {
    fn run(self) {
        let mut rng = StdRng::from_os_rng();
        let mut attempt: u32 = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let cursor = self.peer.cursor();
            let res = match self.backlog.after(cursor, BATCH_BYTES) {
                Ok(items) if items.is_empty() => {
                    self.backlog.wait_after(cursor, Duration::from_millis(500));
                    continue;
                }
                Ok(items) => self
                    .replicate(cursor, &items)
                    .map(|applied| (applied, items.len())),
                Err(gap) => self.resync(gap).map(|applied| (applied, 0)),
            };
            match res {
                Ok((applied, shipped)) => {
                    attempt = 0;
                    self.advance(applied);
                    let mut st = self.peer.status();
                    st.state = LinkState::Ok;
                    st.last_error = None;
                    st.logged_failure = None;
                    st.shipped_entries += shipped as u64;
                }
                Err(SendError::Behind(applied)) => {
                    tracing::warn!(peer = %self.peer.url, cursor, applied, "peer has applied less than its cursor: resending");
                    self.peer.cursor.store(applied, Ordering::SeqCst);
                }
                Err(SendError::Failed(e)) => {
                    self.failed(LinkState::Retrying, e);
                    self.sleep(backoff(attempt, BACKOFF_BASE, BACKOFF_MAX, &mut rng));
                    attempt = attempt.saturating_add(1);
                }
                Err(SendError::Unauthorized(e)) => {
                    self.failed(LinkState::Unauthorized, e);
                    self.sleep(backoff(attempt, BACKOFF_BASE, BACKOFF_MAX, &mut rng));
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Records a failed request; logs once when the link turns `state`.
    fn failed(&self, state: LinkState, error: String) {
        let mut st = self.peer.status();
        if st.logged_failure != Some(state) {
            st.logged_failure = Some(state);
            match state {
                LinkState::Unauthorized => tracing::error!(
                    peer = %self.peer.url,
                    error = %error,
                    "the peer refuses this node's pool secret: the pool's secrets differ; give \
                     every node the same --peer-secret-file (or the same \
                     ~/.tsdb-backend/peer-secret); retrying with backoff"
                ),
                _ => {
                    tracing::warn!(peer = %self.peer.url, error = %error, "replication to peer failing; retrying with backoff")
                }
            }
        }
        st.state = state;
        st.last_error = Some(error);
    }

    fn advance(&self, applied: u64) {
        self.peer.cursor.store(applied, Ordering::SeqCst);
        let floor = self.all.iter().map(|p| p.cursor()).min().unwrap_or(applied);
        self.engine.set_replication_floor(floor);
        let mut c = self.cursors.lock().unwrap_or_else(PoisonError::into_inner);
        if c.cursors.get(&self.peer.url) != Some(&applied) {
            c.cursors.insert(self.peer.url.clone(), applied);
            c.save(&self.cursors_path);
        }
    }

    /// Sleeps, waking early when the node stops.
    fn sleep(&self, d: Duration) {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() && !self.stop.load(Ordering::SeqCst) {
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
    }

    fn replicate(&self, cursor: u64, items: &[Item]) -> Result<u64, SendError> {
        let url = format!("{}/internal/replicate", self.peer.url);
        let res = self
            .client
            .post(&self.agent, &url)
            .query("origin", self.engine.origin())
            .query("after", cursor.to_string())
            .header("content-type", "application/octet-stream")
            // A stopped peer still accepts connections: bound the wait for its answer so
            // the link shows `retrying` instead of hanging. A batch is at most 4 MiB and the
            // peer answers after one fsync, so this is generous.
            .config()
            .timeout_global(Some(REPLICATE_TIMEOUT))
            .build()
            .send(&encode_frames(items)[..]);
        self.ack(res)
    }

    fn resync(&self, gap: Gap) -> Result<u64, SendError> {
        {
            let mut st = self.peer.status();
            if st.state != LinkState::Resyncing {
                tracing::error!(
                    peer = %self.peer.url,
                    cursor = self.peer.cursor(),
                    evicted_upto = gap.evicted_upto,
                    "peer needs entries no longer in the backlog: resync (the blocks it lacks, then the head)"
                );
            }
            st.state = LinkState::Resyncing;
        }
        // Read before the state is taken: every local entry up to here is in it.
        let covered = self.engine.catalog().applied_from(self.engine.origin());
        let pushed = super::transfer::push(&self.engine, &self.client, &self.agent, &self.peer.url)
            .map_err(|e| match e {
                TransferError::Unauthorized { .. } => SendError::Unauthorized(e.to_string()),
                TransferError::Failed { .. } => SendError::Failed(format!("resync: {e}")),
            })?;
        self.peer.status().resyncs += 1;
        tracing::info!(
            peer = %self.peer.url,
            covered,
            blocks_sent = pushed.blocks_sent,
            blocks_skipped = pushed.blocks_skipped,
            bytes = pushed.bytes,
            "peer resynchronised"
        );
        Ok(pushed.applied.max(covered))
    }

    fn ack(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<u64, SendError> {
        let mut res = res.map_err(|e| SendError::Failed(format!("{}: {e}", self.peer.url)))?;
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .read_to_string()
            .map_err(|e| SendError::Failed(format!("{}: reading answer: {e}", self.peer.url)))?;
        let ack = serde_json::from_str::<Ack>(&body).ok();
        match (status, ack) {
            (200, Some(a)) => Ok(a.applied),
            (409, Some(a)) => Err(SendError::Behind(a.applied)),
            (401, _) => Err(SendError::Unauthorized(format!(
                "{}: answered 401: the peer refuses this node's pool secret",
                self.peer.url
            ))),
            _ => Err(SendError::Failed(format!(
                "{}: answered {status}: {}",
                self.peer.url,
                body.chars().take(200).collect::<String>()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_detected() {
        let items: Vec<Item> = [(3u64, b"abc".to_vec()), (9, Vec::new())]
            .into_iter()
            .map(|(seq, p)| Item {
                seq,
                at_ns: 0,
                payload: Arc::new(p),
            })
            .collect();
        let body = encode_frames(&items);
        assert_eq!(
            decode_frames(&body),
            Some(vec![(3, b"abc".to_vec()), (9, Vec::new())])
        );
        assert_eq!(decode_frames(&body[..body.len() - 13]), None);
    }
}
