//! `gateway check`: the real binary on real files, as an operator runs it.

use std::path::Path;
use std::process::Command;
use tests::process::gateway_bin;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a test file");
}

fn bootstrap(dir: &Path) -> std::path::PathBuf {
    let cfg = dir.join("gateway.yaml");
    write(
        &cfg,
        "listeners:\n  - { name: public, address: 127.0.0.1:8080 }\nadmin: { address: 127.0.0.1:9090 }\npolicies: policies/\n",
    );
    std::fs::create_dir_all(dir.join("policies")).expect("policies dir");
    cfg
}

fn check(cfg: &Path) -> (i32, String) {
    let out = Command::new(gateway_bin().expect("gateway binary"))
        .args(["check", "--config"])
        .arg(cfg)
        .output()
        .expect("running gateway check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_example_configuration_passes_the_check() {
    let root = tests::workspace_root();
    // The example's TLS listener uses the development certificates the start command
    // writes (git-ignored), and its API-key route the development key written beside them;
    // write them the same way.
    let certs = Command::new(gateway_bin().expect("gateway binary"))
        .args(["dev-certs", "--out"])
        .arg(root.join("config/dev-certs"))
        .output()
        .expect("running gateway dev-certs");
    assert!(certs.status.success(), "{certs:?}");
    let (code, text) = check(&root.join("config/gateway.yaml"));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok (2 listener(s), 1 pool(s), 4 route(s), 1 cache(s), policy "),
        "{text}"
    );
}

#[test]
fn a_typo_and_a_missing_pool_are_each_named_with_file_line_and_field_and_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = bootstrap(dir.path());
    write(
        &dir.path().join("policies/tsdb.yaml"),
        "pools:\n  tsdb:\n    backends:\n      - { address: 127.0.0.1:8086 }\nroutes:\n  - name: q\n    match: { path_prefix: /query }\n    pool: tsbd\n",
    );
    write(
        &dir.path().join("policies/other.yaml"),
        "routes:\n  - name: w\n    match: { path_prefx: /write }\n    pool: tsdb\n",
    );
    let (code, text) = check(&cfg);
    assert_eq!(code, 1, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("policies/other.yaml:3:"), "{text}");
    assert!(lines[0].contains("path_prefx"), "{text}");
    assert!(
        lines[1].ends_with(
            "policies/tsdb.yaml:8:11: routes[0].pool: no pool named \"tsbd\" (pools: tsdb)"
        ),
        "{text}"
    );
}

#[test]
fn a_tls_listener_whose_key_is_missing_is_named_and_exits_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let out = Command::new(gateway_bin().expect("gateway binary"))
        .args(["dev-certs", "--out"])
        .arg(&certs)
        .output()
        .expect("running gateway dev-certs");
    assert!(out.status.success(), "{out:?}");
    std::fs::remove_file(certs.join("server.key")).expect("remove the key");
    let cfg = dir.path().join("gateway.yaml");
    write(
        &cfg,
        "listeners:\n  - name: secure\n    address: 127.0.0.1:8443\n    tls: { cert: certs/server.pem, key: certs/server.key }\nadmin: { address: 127.0.0.1:9090 }\npolicies: policies/\n",
    );
    std::fs::create_dir_all(dir.path().join("policies")).expect("policies dir");
    let (code, text) = check(&cfg);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("listener secure"), "{text}");
    assert!(text.contains("server.key"), "{text}");
}
