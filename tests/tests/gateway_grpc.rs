//! gRPC through the gateway (issue 19): a real tonic client, over HTTP/2 to the gateway's
//! h2c listener, to real tonic servers (the standard health service, run as processes by
//! `src/bin/grpc_health_server.rs`) in an `h2c` pool. Unary and server-streaming calls
//! pass with their trailers and statuses; a backend killed mid-run is failed over for new
//! calls; and the gateway's own refusals (401, 429, 503) reach the client as the gRPC
//! statuses UNAUTHENTICATED, RESOURCE_EXHAUSTED and UNAVAILABLE.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use tests::gateway::GatewayProcess;
use tests::wait::eventually;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A gRPC health server process on a free port, killed (SIGKILL, by PID) on drop.
struct GrpcServer {
    child: Child,
    addr: SocketAddr,
}

impl GrpcServer {
    /// Starts one; with `flap`, that service's status turns every 20 ms.
    fn start(flap: Option<&str>) -> GrpcServer {
        let port = tests::free_port().expect("a free port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_grpc-health-server"));
        cmd.arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(name) = flap {
            cmd.args(["--flap", name]);
        }
        let child = cmd.spawn().expect("starting grpc-health-server");
        let mut server = GrpcServer { child, addr };
        let up = eventually("the gRPC server to listen", |_| {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("grpc-health-server exited: {status}");
            }
            Ok(TcpStream::connect(addr).ok().map(|_| ()))
        });
        if let Err(e) = up {
            server.kill();
            panic!("{e}");
        }
        server
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The policy: pool `grpc` of `backends` (h2c, health-checked every 100 ms), pool `down`
/// whose only backend listens nowhere, and routes chosen by the call's authority.
fn policy(backends: &[SocketAddr], nowhere: u16) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{ address: {b} }}\n"))
        .collect();
    format!(
        "\
authenticators:
  certs: {{ mtls: {{}} }}
rate_limits:
  one: {{ key: [route], rate: 1/m, burst: 1 }}
pools:
  grpc:
    protocol: h2c
    backends:
{list}    health_check: {{ path: /ping, interval: 100ms, timeout: 90ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
  down:
    protocol: h2c
    backends:
      - {{ address: 127.0.0.1:{nowhere} }}
    health_check: {{ path: /ping, interval: 100ms, timeout: 90ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
routes:
  - name: health
    match: {{ path_prefix: / }}
    pool: grpc
    retries: {{ attempts: 2, on: [connect] }}
  - name: authenticated
    match: {{ host: auth.test, path_prefix: / }}
    pool: grpc
    auth: {{ any_of: [certs] }}
  - name: limited
    match: {{ host: limited.test, path_prefix: / }}
    pool: grpc
    rate_limit: [one]
  - name: unavailable
    match: {{ host: down.test, path_prefix: / }}
    pool: down
"
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A client of the health service through the gateway at `gw`, calling as `authority`.
async fn client(
    gw: SocketAddr,
    authority: &str,
) -> anyhow::Result<HealthClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gw}"))?
        .origin(format!("http://{authority}").parse()?)
        .connect()
        .await?;
    Ok(HealthClient::new(channel))
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

fn start_gateway(backends: &[SocketAddr]) -> (GatewayProcess, SocketAddr) {
    let nowhere = tests::free_port().expect("a free port");
    let gw = GatewayProcess::builder(&policy(backends, nowhere))
        .h2c()
        .start()
        .expect("starting the gateway");
    let addr = gw.h2c_addr.expect("an h2c listener");
    (gw, addr)
}

#[test]
fn unary_and_server_streaming_calls_pass_with_their_statuses() {
    let a = GrpcServer::start(Some("flapper"));
    let b = GrpcServer::start(Some("flapper"));
    let (gw, addr) = start_gateway(&[a.addr, b.addr]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(addr, "grpc.test").await.unwrap();
        // A unary call whose status comes in the trailers after its message.
        for _ in 0..4 {
            let r = c
                .check(check(""))
                .await
                .unwrap_or_else(|s| panic!("{s:?}\n{}", gw.log()));
            assert_eq!(r.into_inner().status, ServingStatus::Serving as i32);
        }
        // The backend's own error status passes as it is.
        let e = c.check(check("no-such-service")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");

        // A stream that never ends: its messages arrive one by one as the backend sends
        // them (a gateway that buffered the answer would deliver none).
        let mut stream = c.watch(check("flapper")).await.unwrap().into_inner();
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let m = stream.message().await.unwrap().expect("the stream goes on");
            statuses.push(m.status);
        }
        assert!(
            statuses.contains(&(ServingStatus::Serving as i32)),
            "{statuses:?}"
        );
        assert!(
            statuses.contains(&(ServingStatus::NotServing as i32)),
            "{statuses:?}"
        );
    });
}

#[test]
fn a_backend_killed_mid_run_is_failed_over_for_new_calls() {
    let mut a = GrpcServer::start(None);
    let b = GrpcServer::start(None);
    let (gw, addr) = start_gateway(&[a.addr, b.addr]);
    let rt = runtime();
    let mut c = rt.block_on(client(addr, "grpc.test")).unwrap();
    for i in 0..10 {
        let r = rt.block_on(c.check(check("")));
        assert!(r.is_ok(), "call {i}: {r:?}\n{}", gw.log());
    }
    a.kill();
    // A call racing the kill may fail; once one has passed, every new call does.
    eventually("a call after the kill to pass", |last| {
        let r = rt.block_on(c.check(check("")));
        *last = format!("{r:?}");
        Ok(r.is_ok().then_some(()))
    })
    .unwrap();
    for i in 0..20 {
        let r = rt.block_on(c.check(check("")));
        assert!(r.is_ok(), "call {i} after the kill: {r:?}\n{}", gw.log());
    }
    drop(b);
}

#[test]
fn gateway_refusals_reach_grpc_clients_as_grpc_statuses() {
    let a = GrpcServer::start(None);
    let (gw, addr) = start_gateway(&[a.addr]);
    let rt = runtime();
    rt.block_on(async {
        // 401: the route wants a client certificate, the call has none.
        let mut c = client(addr, "auth.test").await.unwrap();
        let e = c.check(check("")).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert_eq!(e.message(), "authentication required");

        // 429: one call a minute on this route.
        let mut c = client(addr, "limited.test").await.unwrap();
        c.check(check(""))
            .await
            .unwrap_or_else(|s| panic!("{s:?}\n{}", gw.log()));
        let e = c.check(check("")).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("rate limited by one"), "{e:?}");
        assert!(e.metadata().get("retry-after").is_some(), "{e:?}");
    });
    // 503: the pool's only backend failed its health checks (until they run, the refused
    // connect is a 502: UNAVAILABLE too).
    let mut c = rt.block_on(client(addr, "down.test")).unwrap();
    let e = eventually("the down pool to answer 503", |last| {
        let e = rt.block_on(c.check(check(""))).unwrap_err();
        anyhow::ensure!(e.code() == Code::Unavailable, "{e:?}");
        *last = format!("{e:?}");
        Ok((e.message() == "no healthy backend available").then_some(e))
    })
    .unwrap();
    assert_eq!(e.code(), Code::Unavailable);
}

#[test]
fn a_grpc_health_check_takes_out_a_backend_whose_service_is_not_serving() {
    let a = GrpcServer::start(None);
    let list = format!("      - {{ address: {} }}\n", a.addr);
    let policy = format!(
        "\
pools:
  serving:
    protocol: h2c
    backends:
{list}    health_check: {{ grpc_service: \"\", interval: 100ms, timeout: 90ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
  missing:
    protocol: h2c
    backends:
{list}    health_check: {{ grpc_service: no-such-service, interval: 100ms, timeout: 90ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
routes:
  - name: serving
    match: {{ path_prefix: / }}
    pool: serving
  - name: missing
    match: {{ host: missing.test, path_prefix: / }}
    pool: missing
"
    );
    let gw = GatewayProcess::builder(&policy).h2c().start().unwrap();
    let addr = gw.h2c_addr.unwrap();
    let rt = runtime();
    // The same server, checked for another service: NOT_FOUND takes it out of that pool.
    let mut c = rt.block_on(client(addr, "missing.test")).unwrap();
    eventually(
        "the pool checked for a missing service to be down",
        |last| {
            let r = rt.block_on(c.check(check("")));
            *last = format!("{r:?}");
            Ok(r.err()
                .filter(|e| e.message() == "no healthy backend available"))
        },
    )
    .unwrap();
    let mut c = rt.block_on(client(addr, "serving.test")).unwrap();
    for i in 0..5 {
        let r = rt.block_on(c.check(check("")));
        assert!(r.is_ok(), "call {i}: {r:?}\n{}", gw.log());
    }
    assert!(
        gw.log().contains("grpc-status 5"),
        "NOT_FOUND: {}",
        gw.log()
    );
}
