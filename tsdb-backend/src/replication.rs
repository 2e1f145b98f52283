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
//! gap (entries gone from the backlog) ──▶ POST /internal/resync (full snapshot, merged
//!                                        value by value, last writer wins)
//! ```
//!
//! Origins are `node_id/incarnation`: a node whose data directory was lost comes back as a
//! new incarnation, so its new entries are never mistaken for old ones its peers applied.

pub mod backoff;
pub mod client;
pub mod shipper;

use crate::storage::Engine;
use client::PeerClient;
use std::time::Duration;

/// Rebuilds a node that starts with an empty data directory from the first peer that
/// answers: its full snapshot is merged here before the node serves. A node of a new pool
/// finds no peer (or empty ones) and starts empty. Bounded: a few rounds over the peers.
pub async fn bootstrap(
    engine: &Engine,
    peers: &[String],
    client: &PeerClient,
) -> Result<Option<String>, String> {
    let agent = client.agent(Duration::from_secs(2), Duration::from_secs(300));
    for round in 0..3 {
        for peer in peers {
            let url = format!("{}/internal/snapshot", peer.trim_end_matches('/'));
            let (agent, client) = (agent.clone(), client.clone());
            let fetched = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
                let mut res = client.get(&agent, &url).call().map_err(|e| e.to_string())?;
                if res.status().as_u16() == 401 {
                    return Err(
                        "answered 401: the peer refuses this node's pool secret (the pool's \
                         secrets differ)"
                            .into(),
                    );
                }
                if res.status().as_u16() != 200 {
                    return Err(format!("answered {}", res.status()));
                }
                res.body_mut()
                    .with_config()
                    .limit(1 << 34)
                    .read_to_vec()
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?;
            match fetched {
                Ok(bytes) => {
                    engine
                        .merge_snapshot(&bytes)
                        .await
                        .map_err(|e| format!("merging the snapshot of {peer}: {e}"))?;
                    return Ok(Some(peer.clone()));
                }
                Err(e) => tracing::info!(peer = %peer, round, error = %e, "no snapshot from peer"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(None)
}
