//! Moving a node's state to a peer over HTTP: pushed by a shipper whose peer lacks entries
//! the backlog no longer holds (a resync), pulled by a node that starts with an empty data
//! directory (a rebuild). What is sent, in which order and why is `storage/transfer.rs`;
//! this module is its transport.
//!
//! ```text
//! push (resync)                                   pull (rebuild)
//!  POST /internal/resync    catalog part           GET /internal/state?part=head   (kept)
//!  GET  /internal/blocks    what the peer has      GET /internal/state?part=catalog, merged
//!  PUT  /internal/block     each block it lacks    GET /internal/blocks
//!  POST /internal/resync    head part, marks       GET /internal/block  each one this node lacks
//!                                                  the kept head merged, marks last
//! ```
//!
//! Blocks go one per request, streamed from their files: a transfer holds at most the head
//! in memory, never the data stored.

use super::client::PeerClient;
use crate::storage::transfer::{parse_hash, send_state, BlockReader, BlockSummary, Sent, Sink};
use crate::storage::Engine;
use crate::storage::StorageError;
use std::collections::BTreeSet;
use std::io::Read;

/// Most bytes of a block a peer may send in one request: far above what a compaction
/// writes, so only a wrong length hits it.
pub const MAX_BLOCK_BYTES: u64 = 16 << 30;

/// Most bytes of one state part (bounded by the head's budget, with room).
const MAX_STATE_BYTES: u64 = 8 << 30;

/// Why a transfer did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The peer refused this node's pool secret (401).
    #[error("{url}: answered 401: the peer refuses this node's pool secret")]
    Unauthorized { url: String },
    #[error("{url}: {reason}")]
    Failed { url: String, reason: String },
}

/// One peer, called as this node.
#[derive(Clone)]
struct Remote {
    client: PeerClient,
    agent: ureq::Agent,
    base: String,
}

impl Remote {
    fn new(client: &PeerClient, agent: &ureq::Agent, peer: &str) -> Remote {
        Remote {
            client: client.clone(),
            agent: agent.clone(),
            base: peer.trim_end_matches('/').to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn failed(&self, path: &str, reason: impl std::fmt::Display) -> TransferError {
        TransferError::Failed {
            url: self.url(path),
            reason: reason.to_string(),
        }
    }

    /// The answer's body if the status is 200, else an error naming it.
    fn expect_ok(
        &self,
        path: &str,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        limit: u64,
    ) -> Result<Vec<u8>, TransferError> {
        let mut res = res.map_err(|e| self.failed(path, e))?;
        let status = res.status().as_u16();
        if status == 401 {
            return Err(TransferError::Unauthorized {
                url: self.url(path),
            });
        }
        let body = res
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.failed(path, format!("reading the answer: {e}")))?;
        if status != 200 {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(self.failed(path, format!("answered {status}: {text}")));
        }
        Ok(body)
    }

    fn get(&self, path: &str, limit: u64) -> Result<Vec<u8>, TransferError> {
        let res = self.client.get(&self.agent, &self.url(path)).call();
        self.expect_ok(path, res, limit)
    }

    fn blocks(&self) -> Result<Vec<BlockSummary>, TransferError> {
        let body = self.get("/internal/blocks", 1 << 30)?;
        serde_json::from_slice(&body).map_err(|e| self.failed("/internal/blocks", e))
    }

    fn post_state(&self, origin: &str, bytes: &[u8]) -> Result<u64, TransferError> {
        let path = "/internal/resync";
        let res = self
            .client
            .post(&self.agent, &self.url(path))
            .query("origin", origin)
            .header("content-type", "application/octet-stream")
            .send(bytes);
        let body = self.expect_ok(path, res, 1 << 20)?;
        serde_json::from_slice::<super::shipper::Ack>(&body)
            .map(|a| a.applied)
            .map_err(|e| self.failed(path, e))
    }
}

/// The (database, hash) pairs of a list.
fn held(list: &[BlockSummary]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|b| (b.db.clone(), b.hash.clone()))
        .collect()
}

/// A peer as the receiver of this node's state.
struct PushTo<'a> {
    remote: Remote,
    origin: &'a str,
}

impl Sink for PushTo<'_> {
    type Error = TransferError;

    fn merge_state(&mut self, bytes: &[u8]) -> Result<u64, TransferError> {
        self.remote.post_state(self.origin, bytes)
    }

    fn blocks(&mut self) -> Result<Vec<BlockSummary>, TransferError> {
        self.remote.blocks()
    }

    fn send_block(&mut self, b: &BlockSummary, bytes: BlockReader) -> Result<(), TransferError> {
        let path = "/internal/block";
        let r = &self.remote;
        let res = r
            .client
            .put(&r.agent, &r.url(path))
            .query("db", &b.db)
            .query("hash", &b.hash)
            .header("content-type", "application/octet-stream")
            .header("content-length", bytes.len().to_string())
            .send(ureq::SendBody::from_owned_reader(bytes));
        r.expect_ok(path, res, 1 << 20).map(|_| ())
    }
}

impl From<StorageError> for TransferError {
    fn from(e: StorageError) -> Self {
        TransferError::Failed {
            url: "(this node)".into(),
            reason: e.to_string(),
        }
    }
}

/// Brings `peer` up to this node's state: its catalog, the blocks it lacks, its head (see
/// `storage/transfer.rs`). Blocking (a shipper thread).
pub fn push(
    engine: &Engine,
    client: &PeerClient,
    agent: &ureq::Agent,
    peer: &str,
) -> Result<Sent, TransferError> {
    let mut to = PushTo {
        remote: Remote::new(client, agent, peer),
        origin: engine.origin(),
    };
    send_state(engine, &mut to)
}

/// What a pull moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pulled {
    pub blocks: usize,
    pub bytes: u64,
}

/// Runs a blocking call to the peer off the async workers.
async fn blocking<T: Send + 'static>(
    remote: &Remote,
    f: impl FnOnce(Remote) -> Result<T, TransferError> + Send + 'static,
) -> Result<T, TransferError> {
    let r = remote.clone();
    tokio::task::spawn_blocking(move || f(r))
        .await
        .map_err(|e| remote.failed("(local)", e))?
}

/// Copies `peer`'s state into this node: see the module docs. A block the peer no longer
/// has when it is asked for (compacted meanwhile) fails the pull; the caller tries again.
pub async fn pull(
    engine: &Engine,
    client: &PeerClient,
    agent: &ureq::Agent,
    peer: &str,
) -> Result<Pulled, TransferError> {
    let remote = Remote::new(client, agent, peer);
    // The head first, then the blocks: what a flush moves between the two is in a block.
    let head = blocking(&remote, |r| {
        r.get("/internal/state?part=head", MAX_STATE_BYTES)
    })
    .await?;
    let catalog = blocking(&remote, |r| {
        r.get("/internal/state?part=catalog", MAX_STATE_BYTES)
    })
    .await?;
    engine
        .merge_snapshot(&catalog)
        .await
        .map_err(|e| remote.failed("/internal/state?part=catalog", format!("merging: {e}")))?;
    let list = blocking(&remote, |r| r.blocks()).await?;
    let mine = held(&engine.block_list());
    let mut pulled = Pulled::default();
    for b in list {
        if mine.contains(&(b.db.clone(), b.hash.clone())) {
            continue;
        }
        let path = "/internal/block";
        let Some(hash) = parse_hash(&b.hash) else {
            return Err(remote.failed("/internal/blocks", format!("a bad hash {:?}", b.hash)));
        };
        let to = engine
            .incoming_block_path()
            .map_err(|e| remote.failed("(local)", e))?;
        let (db, hash_text, file) = (b.db.clone(), b.hash.clone(), to.clone());
        let bytes = blocking(&remote, move |r| r.download(&db, &hash_text, &file)).await?;
        tokio::task::block_in_place(|| engine.receive_block(&b.db, hash, &to))
            .map_err(|e| remote.failed(path, e))?;
        pulled.blocks += 1;
        pulled.bytes += bytes;
    }
    engine
        .merge_snapshot(&head)
        .await
        .map_err(|e| remote.failed("/internal/state?part=head", format!("merging: {e}")))?;
    pulled.bytes += (head.len() + catalog.len()) as u64;
    Ok(pulled)
}

impl Remote {
    /// Writes the block of `db` with hash `hash` to `to` and fsyncs it; returns its length.
    fn download(&self, db: &str, hash: &str, to: &std::path::Path) -> Result<u64, TransferError> {
        let path = "/internal/block";
        let mut res = self
            .client
            .get(&self.agent, &self.url(path))
            .query("db", db)
            .query("hash", hash)
            .call()
            .map_err(|e| self.failed(path, e))?;
        let status = res.status().as_u16();
        if status != 200 {
            let text = res.body_mut().read_to_string().unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(self.failed(path, format!("answered {status}: {text}")));
        }
        let local = |e: std::io::Error| self.failed(path, format!("{}: {e}", to.display()));
        let mut file = std::fs::File::create(to).map_err(local)?;
        let mut body = res.body_mut().as_reader().take(MAX_BLOCK_BYTES);
        let n = std::io::copy(&mut body, &mut file).map_err(local)?;
        file.sync_all().map_err(local)?;
        Ok(n)
    }
}
