//! A gRPC server for the end-to-end tests: the standard health service
//! (`grpc.health.v1.Health`: unary `Check`, server-streaming `Watch`) in plaintext HTTP/2
//! (h2c) on the address given. The empty service name is SERVING.
//!
//! `grpc-health-server ADDR [--flap NAME]`: with `--flap`, service NAME turns between
//! SERVING and NOT_SERVING every 20 ms (a bounded number of times), so a `Watch` of it keeps
//! streaming answers while it is open.

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::time::Duration;
use tonic_health::ServingStatus;

/// How often `--flap` turns its service, and how many times at most.
const FLAP_EVERY: Duration = Duration::from_millis(20);
const MAX_FLAPS: u32 = 1_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .context("usage: grpc-health-server ADDR [--flap NAME]")?
        .parse()
        .context("ADDR must be ip:port")?;
    let mut flap = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--flap" => flap = Some(args.next().context("--flap needs a service name")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let (reporter, service) = tonic_health::server::health_reporter();
    if let Some(name) = flap {
        tokio::spawn(async move {
            for i in 0..MAX_FLAPS {
                let status = if i % 2 == 0 {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(&name, status).await;
                tokio::time::sleep(FLAP_EVERY).await;
            }
        });
    }
    tonic::transport::Server::builder()
        .add_service(service)
        .serve(addr)
        .await
        .with_context(|| format!("serving gRPC on {addr}"))?;
    Ok(())
}
