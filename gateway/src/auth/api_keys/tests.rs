//! The key store: SHA-256 and Argon2 entries, the remembered Argon2 successes, the turns at
//! Argon2 checks, and the reload of a changed (or broken) file.

use super::*;
use crate::config::api_keys::ApiKeysConfig;

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An Argon2id PHC string of `key` at a cheap cost (tests run unoptimised).
fn cheap_argon2(key: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"saltsaltsalt").unwrap();
    hasher
        .hash_password(key.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn store(dir: &Path, text: &str, slots: usize) -> ApiKeyStore {
    let file = dir.join("keys.yaml");
    std::fs::write(&file, text).unwrap();
    ApiKeyStore::load(
        "keys",
        ApiKeysConfig { file, header: None },
        Arc::new(tokio::sync::Semaphore::new(slots)),
        Arc::default(),
    )
    .unwrap()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_sha256_entry_names_its_caller_and_other_keys_are_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(
        dir.path(),
        &format!(
            "keys:\n  - sha256: {}\n    identity: telegraf\n    tenant: acme\n    roles: [writer]\n",
            sha256_hex("k-telegraf")
        ),
        1,
    );
    let Lookup::Accepted(id) = s.lookup(b"k-telegraf") else {
        panic!("accepted")
    };
    assert_eq!(id.subject, "telegraf");
    assert_eq!(id.tenant.as_deref(), Some("acme"));
    assert_eq!(id.roles, ["writer"]);
    assert_eq!(id.method, AuthMethod::ApiKey);
    assert_eq!(id.authenticator, "keys");
    assert_eq!(s.lookup(b"k-telegraf "), Lookup::Unknown);
    assert_eq!(s.lookup(b""), Lookup::Unknown);
    assert_eq!(s.counts().accepted.load(Ordering::Relaxed), 1);
    assert_eq!(s.counts().unknown.load(Ordering::Relaxed), 2);
}

#[test]
fn an_argon2_entry_is_checked_off_the_quick_path_once_then_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(store(
        dir.path(),
        &format!(
            "keys:\n  - argon2: \"{}\"\n    identity: grafana\n    roles: [reader]\n",
            cheap_argon2("k-grafana")
        ),
        1,
    ));
    assert_eq!(s.lookup(b"k-grafana"), Lookup::Slow);
    let id = run(s.clone().check_slow(b"k-grafana".to_vec())).unwrap();
    assert_eq!(id.subject, "grafana");
    assert!(
        matches!(s.lookup(b"k-grafana"), Lookup::Accepted(_)),
        "remembered by its SHA-256"
    );
    assert_eq!(
        s.lookup(b"wrong"),
        Lookup::Slow,
        "a wrong key is never remembered"
    );
    assert_eq!(
        run(s.clone().check_slow(b"wrong".to_vec())),
        Err(UNKNOWN_KEY)
    );
    assert_eq!(s.lookup(b"wrong"), Lookup::Slow);
}

#[test]
fn without_a_free_turn_an_argon2_check_is_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(store(
        dir.path(),
        &format!(
            "keys:\n  - argon2: \"{}\"\n    identity: g\n",
            cheap_argon2("k")
        ),
        0,
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(s.clone().check_slow(b"k".to_vec())), Err(BUSY));
    assert_eq!(s.counts().busy.load(Ordering::Relaxed), 1);
}

#[test]
fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_keys_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let entry =
        |key: &str, who: &str| format!("  - sha256: {}\n    identity: {who}\n", sha256_hex(key));
    let s = store(dir.path(), &format!("keys:\n{}", entry("a", "alice")), 1);
    assert_eq!(s.reload_if_changed(), None, "unchanged");
    let file = dir.path().join("keys.yaml");
    std::fs::write(
        &file,
        format!("keys:\n{}{}", entry("b", "bob"), entry("c", "carol")),
    )
    .unwrap();
    assert_eq!(s.reload_if_changed(), Some(Ok(2)));
    assert_eq!(s.lookup(b"a"), Lookup::Unknown, "removed");
    assert!(matches!(s.lookup(b"b"), Lookup::Accepted(ref id) if id.subject == "bob"));

    std::fs::write(&file, "keys:\n  - key: plaintext\n    identity: mallory\n").unwrap();
    let Some(Err(e)) = s.reload_if_changed() else {
        panic!("refused")
    };
    assert!(
        e.contains("keys.yaml:2:10: keys[0].key: plain keys are not accepted"),
        "{e}"
    );
    assert!(
        matches!(s.lookup(b"c"), Lookup::Accepted(_)),
        "the old keys stay"
    );
    assert_eq!(s.status().last_error.as_deref(), Some(e.as_str()));
    assert_eq!(
        s.reload_if_changed(),
        None,
        "a broken file is read once per change"
    );

    std::fs::remove_file(&file).unwrap();
    assert!(matches!(s.reload_if_changed(), Some(Err(_))));
    assert!(
        matches!(s.lookup(b"c"), Lookup::Accepted(_)),
        "a missing file keeps them too"
    );

    std::fs::write(&file, format!("keys:\n{}", entry("d", "dave"))).unwrap();
    assert_eq!(s.reload_if_changed(), Some(Ok(1)));
    assert_eq!(s.status().last_error, None);
    assert_eq!(s.status().keys, 1);
    assert_eq!(s.counts().reloads_ok.load(Ordering::Relaxed), 2);
    assert_eq!(s.counts().reloads_failed.load(Ordering::Relaxed), 2);
}

#[test]
fn digests_compare_equal_only_when_every_byte_is() {
    let a = digest(b"x");
    let mut b = a;
    assert!(a == b);
    b.0[31] ^= 1;
    assert!(a != b);
}
