//! The admin port's dashboard: `GET /` is one self-contained HTML page (nothing loaded from
//! elsewhere), and in headless Chromium it shows the pool's backends and the routes with
//! their rates, from `/admin/status` and `/metrics`; with a TSDB pool, each node's replication
//! row (from its own `/health`), and a node that is killed shown down.
//!
//! Chromium is Debian's `chromium`, which `scripts/install-test-deps.sh` installs; without
//! it the browser half fails, it does not skip. It is killed if it has not finished in 60 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::gateway::{catch_all_policy, tsdb_policy, GatewayProcess};
use tests::http::request;
use tests::pool::Pool;
use tests::upstream::FakeUpstream;
use tests::wait::eventually;

fn chromium() -> PathBuf {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return fixed.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .expect("chromium not found: run scripts/install-test-deps.sh")
}

/// The DOM of `url` after a few seconds of the page's own time (its one-second refreshes
/// run; a fetch holds the virtual clock until it is answered).
fn dom_of(url: &str, dir: &Path) -> String {
    let out = dir.join("dom.html");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Polls for up to 60 s.
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            return std::fs::read_to_string(&out).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("chromium did not finish within 60 s");
}

#[test]
fn the_dashboard_is_one_page_that_shows_the_backends_and_routes_live() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "5s", 1)).unwrap();
    let page = request("GET", &format!("{}/", gw.admin_url()), &[], None).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    for outside in [
        "src=\"http",
        "src=\"//",
        "href=\"http",
        "href=\"//",
        "@import",
    ] {
        assert!(
            !page.body.contains(outside),
            "the page loads from elsewhere: {outside}"
        );
    }
    for _ in 0..5 {
        assert_eq!(
            request("GET", &format!("{}/seen", gw.url()), &[], None)
                .unwrap()
                .status,
            200
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dom = dom_of(&format!("{}/", gw.admin_url()), dir.path());
    assert!(
        dom.contains(&format!(
            "<tr data-backend=\"{}\"><td>{}</td><td><span class=\"ok\">healthy</span>",
            up.addr, up.addr
        )),
        "the backend, healthy, is not in the DOM:\n{dom}"
    );
    assert!(
        dom.contains("<tr><td>all</td><td>"),
        "the route is not in the DOM:\n{dom}"
    );
    assert!(dom.contains("policy v1"), "{dom}");
}

#[test]
fn the_dashboard_shows_the_pools_replication_and_a_killed_node_going_down() {
    let mut pool = Pool::start(2).unwrap();
    let (a, b) = (pool.node(0).addr, pool.node(1).addr);
    let gw = GatewayProcess::start(&tsdb_policy(&[a, b])).unwrap();
    let created = request(
        "POST",
        &format!("{}/query?q=CREATE+DATABASE+d", gw.url()),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(created.status, 200, "{}", created.body);
    let dir = tempfile::tempdir().unwrap();
    let dom = dom_of(&format!("{}/", gw.admin_url()), dir.path());
    for node in [a, b] {
        assert!(
            dom.contains(&format!("<tr data-node=\"{node}\">")),
            "node {node}'s replication row is not in the DOM:\n{dom}"
        );
    }
    assert!(dom.contains("<span class=\"ok\">pass</span>"), "{dom}");

    pool.node_mut(1).kill9();
    eventually("the gateway to see the killed node down", |last| {
        let status = gw.status()?;
        *last = status["pools"]["tsdb"].to_string();
        let down = status["pools"]["tsdb"]["backends"]
            .as_array()
            .is_some_and(|bs| {
                bs.iter()
                    .any(|x| x["address"] == b.to_string() && x["healthy"] == false)
            });
        Ok(down.then_some(()))
    })
    .unwrap();
    let dom = dom_of(&format!("{}/", gw.admin_url()), dir.path());
    assert!(
        dom.contains(&format!(
            "<tr data-backend=\"{b}\"><td>{b}</td><td><span class=\"bad\">down</span>"
        )),
        "the killed node is not shown down:\n{dom}"
    );
    assert!(
        dom.contains(&format!(
            "<tr data-backend=\"{a}\"><td>{a}</td><td><span class=\"ok\">healthy</span>"
        )),
        "{dom}"
    );
    // The survivor's link to the dead node is behind or retrying; its row is still shown.
    assert!(dom.contains(&format!("<tr data-node=\"{a}\">")), "{dom}");
    assert!(!dom.contains(&format!("<tr data-node=\"{b}\">")), "{dom}");
}
