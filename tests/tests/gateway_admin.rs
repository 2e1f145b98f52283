//! The admin port's safety and the access log's rotation: with `admin: { token_file }` the
//! mutating endpoints (reload, purge, drain) answer 401 without the bearer token and work
//! with it, while status, metrics and the dashboard stay open to scrapers; SIGUSR1 has the
//! access log opened again by name, as logrotate expects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::gateway::{catch_all_policy, GatewayProcess};
use tests::http::request;
use tests::process::signal;
use tests::upstream::FakeUpstream;
use tests::wait::eventually;

const TOKEN: &str = "admin-token-7d1f0c9b2e";

#[test]
fn mutating_admin_endpoints_need_the_token_and_reading_ones_do_not() {
    let up = FakeUpstream::new().start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let gw = GatewayProcess::builder(&catch_all_policy(&[up.addr], "5s", 1))
        .admin_option("token_file", &format!("\"{}\"", token_file.display()))
        .start()
        .unwrap();
    let admin = gw.admin_url();
    let post = |path: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        request("POST", &format!("{admin}{path}"), &headers, None).unwrap()
    };
    let drain = format!("/admin/pools/up/backends/{}/drain", up.addr);
    for path in ["/admin/reload", "/admin/cache/purge", drain.as_str()] {
        let r = post(path, None);
        assert_eq!(r.status, 401, "{path} without the token: {}", r.body);
        assert!(r
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")));
        let r = post(path, Some("Bearer admin-token-7d1f0c9b2f"));
        assert_eq!(r.status, 401, "{path} with a wrong token: {}", r.body);
    }
    let status = gw.status().unwrap();
    assert!(
        !status.to_string().contains("\"draining\":true"),
        "a refused drain drained nothing: {status}"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(post("/admin/reload", Some(&bearer)).status, 200);
    let r = post(&drain, Some(&bearer));
    assert!((200..300).contains(&r.status), "{}", r.body);
    assert!(gw
        .status()
        .unwrap()
        .to_string()
        .contains("\"draining\":true"));
    for path in ["/admin/status", "/metrics", "/", "/healthz"] {
        let r = request("GET", &format!("{admin}{path}"), &[], None).unwrap();
        assert_eq!(r.status, 200, "{path} stays open: {}", r.body);
    }
}

#[test]
fn sigusr1_opens_the_access_log_again_after_a_rotation() {
    let up = FakeUpstream::new().start().unwrap();
    let mut gw = GatewayProcess::builder(&catch_all_policy(&[up.addr], "5s", 1))
        .bootstrap_line("access_log: { format: json, to: access.log }")
        .start()
        .unwrap();
    let log = gw.dir().join("access.log");
    let rotated = gw.dir().join("access.log.1");
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).map_or(0, |t| t.lines().count());
    let get = |id: &str| {
        let r = request(
            "GET",
            &format!("{}/x", gw.url()),
            &[("x-request-id", id)],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200);
    };
    get("before-rotation");
    eventually("the first line", |_| Ok((lines(&log) == 1).then_some(()))).unwrap();
    std::fs::rename(&log, &rotated).unwrap();
    get("rotated-not-reopened");
    eventually("the second line in the moved file", |_| {
        Ok((lines(&rotated) == 2).then_some(()))
    })
    .unwrap();
    assert!(signal(gw.pid(), libc::SIGUSR1));
    // The writer creates the file again when it takes the reopen; a line sent after that
    // lands in the new file and never in the moved one. (A request sent before that could
    // still go to the moved file, which is right: the signal had not been taken yet.)
    eventually("access.log created again by the reopen", |_| {
        Ok(log.exists().then_some(()))
    })
    .unwrap();
    get("after-reopen");
    eventually("a line in the reopened file", |last| {
        *last = format!("{} lines in access.log", lines(&log));
        Ok((lines(&log) == 1).then_some(()))
    })
    .unwrap();
    let moved = std::fs::read_to_string(&rotated).unwrap();
    assert!(moved.contains("before-rotation") && moved.contains("rotated-not-reopened"));
    assert!(!moved.contains("after-reopen"), "{moved}");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("after-reopen"));
    assert!(!gw.exited(), "SIGUSR1 must not stop the gateway");
}
