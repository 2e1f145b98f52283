//! The benchmark floor: Pingora with nothing of the gateway's, set up as the gateway sets
//! Pingora up (one worker thread, no work stealing, mimalloc, the same upstream pool size).
//! `scripts/bench-gateway.sh` runs it beside the gateway, so the gap between the two is
//! what routing, health, metrics and headers cost, and the gap to nginx is Pingora's.
//!
//! `cargo run --release --example bare_pingora -- 127.0.0.1:8000 127.0.0.1:9000`
//! (listen address, then the one upstream).

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR");
    };
    let upstream: SocketAddr = upstream.parse()?;
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        upstream_keepalive_pool_size: 256,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, Bare(upstream));
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever()
}
