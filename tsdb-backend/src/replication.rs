//! Pool replication: every node ships the writes it accepted from clients to every peer.
//!
//! ```text
//! WAL writer ──durable local entry──▶ Backlog (bounded, in memory)
//!                                        │ one shipper thread per peer
//!                                        ▼
//!                       POST /internal/replicate?origin=..&after=cursor
//!                                        │ peer logs each as Entry::Replicated, applies
//!                                        ▼ once (per-origin applied sequence numbers)
//!                                   {"applied": n} ──▶ cursor := n (persisted)
//! gap (entries gone from the backlog) ──▶ resync (transfer.rs): the catalog, the blocks
//!                                        the peer lacks by content hash, then the head,
//!                                        merged value by value, last writer wins
//! ```
//!
//! Origins are `node_id/incarnation`: a node whose data directory was lost comes back as a
//! new incarnation, so its new entries are never mistaken for old ones its peers applied.

pub mod backoff;
pub mod client;
pub mod shipper;
pub mod transfer;

use crate::storage::Engine;
use client::PeerClient;
use std::time::Duration;
use transfer::TransferError;

/// Rebuilds a node that starts with an empty data directory from the first peer that
/// answers: its catalog, blocks and head are copied here (`transfer.rs`) before the node
/// serves. A node of a new pool finds no peer (or empty ones) and starts empty. Bounded: a
/// few rounds over the peers.
pub async fn bootstrap(
    engine: &Engine,
    peers: &[String],
    client: &PeerClient,
) -> Result<Option<String>, String> {
    let agent = client.agent(Duration::from_secs(2), Duration::from_secs(300));
    for round in 0..3 {
        for peer in peers {
            match transfer::pull(engine, client, &agent, peer).await {
                Ok(pulled) => {
                    tracing::info!(peer = %peer, blocks = pulled.blocks, bytes = pulled.bytes, "rebuilt from a peer");
                    return Ok(Some(peer.clone()));
                }
                Err(TransferError::Unauthorized { url }) => tracing::info!(
                    peer = %peer,
                    round,
                    url = %url,
                    "no state from peer: it answered 401, refusing this node's pool secret \
                     (the pool's secrets differ)"
                ),
                Err(e) => tracing::info!(peer = %peer, round, error = %e, "no state from peer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(None)
}
