use super::test_keys::{b64, jwks_json, rsa_key, write_jwks, TestKey};
use super::*;
use crate::clock::{Clock, ManualClock};
use jsonwebtoken::Algorithm::*;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;

fn doc(keys: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "keys": keys })).unwrap()
}

fn secret(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

#[test]
fn each_key_type_allows_its_algorithm_family() {
    let rsa = TestKey::rsa("rsa", RS256);
    let p256 = TestKey::ec_p256("p256");
    let p384 = TestKey::ec_p384("p384");
    let ed = TestKey::ed25519("ed");
    let hs = TestKey::hmac("hs", HS256, &secret(64));
    let set = KeySet::from_json(&jwks_json(&[&rsa, &p256, &p384, &ed, &hs])).unwrap();

    assert_eq!(set.len(), 5);
    assert!(set.rejected().is_empty(), "{:?}", set.rejected());
    assert_eq!(
        set.get("rsa").unwrap().algorithms(),
        &[RS256, RS384, RS512, PS256, PS384, PS512]
    );
    assert_eq!(set.get("p256").unwrap().algorithms(), &[ES256]);
    assert_eq!(set.get("p384").unwrap().algorithms(), &[ES384]);
    assert_eq!(set.get("ed").unwrap().algorithms(), &[EdDSA]);
    assert_eq!(set.get("hs").unwrap().algorithms(), &[HS256, HS384, HS512]);
    assert_eq!(
        set.kids().collect::<Vec<_>>(),
        ["rsa", "p256", "p384", "ed", "hs"]
    );
    assert!(set.get("nope").is_none());
    assert!(set.only().is_none(), "five keys: no key is the only one");
}

#[test]
fn a_jwk_alg_narrows_the_key_to_that_one_algorithm() {
    let mut rsa = TestKey::rsa("rsa", PS256);
    rsa.jwk["alg"] = json!("PS256");
    let set = KeySet::from_json(&jwks_json(&[&rsa])).unwrap();
    let key = set.get("rsa").unwrap();
    assert_eq!(key.algorithms(), &[PS256]);
    assert!(key.allows(PS256));
    assert!(!key.allows(RS256));
}

#[test]
fn hmac_secrets_allow_only_the_algorithms_their_length_fits() {
    let set = KeySet::from_json(&doc(&[
        json!({"kty": "oct", "kid": "32", "k": b64(&secret(32))}),
        json!({"kty": "oct", "kid": "48", "k": b64(&secret(48))}),
        json!({"kty": "oct", "kid": "64", "k": b64(&secret(64))}),
        json!({"kty": "oct", "kid": "31", "k": b64(&secret(31))}),
    ]))
    .unwrap();
    assert_eq!(set.get("32").unwrap().algorithms(), &[HS256]);
    assert_eq!(set.get("48").unwrap().algorithms(), &[HS256, HS384]);
    assert_eq!(set.get("64").unwrap().algorithms(), &[HS256, HS384, HS512]);
    assert_eq!(set.rejected().len(), 1);
    assert_eq!(
        set.rejected()[0].reason,
        "HMAC secret is shorter than 32 bytes"
    );
}

#[test]
fn bad_keys_are_reported_by_kid_and_reason_and_the_others_are_kept() {
    let good = TestKey::ec_p256("good");
    let ec = |kid: &str, patch: serde_json::Value| {
        let mut jwk = TestKey::ec_p256(kid).jwk;
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                jwk.as_object_mut().unwrap().remove(k);
            } else {
                jwk[k] = v.clone();
            }
        }
        jwk
    };
    let rsa = rsa_key();
    let short_rsa = {
        // A 1024-bit modulus: the low half of the real one is enough to be refused on size.
        let n = rsa.n_bytes();
        json!({"kty": "RSA", "kid": "short-rsa", "n": b64(&n[128..]), "e": b64(&rsa.e_bytes())})
    };
    let even_rsa = {
        let mut n = rsa.n_bytes().to_vec();
        *n.last_mut().unwrap() &= 0xfe;
        json!({"kty": "RSA", "kid": "even-rsa", "n": b64(&n), "e": b64(&rsa.e_bytes())})
    };
    // A point whose y is not on the curve.
    let off_curve = {
        let mut jwk = TestKey::ec_p256("off-curve").jwk;
        jwk["y"] = json!(b64(&[7u8; 32]));
        jwk
    };
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            json!({"kty": "XYZ", "kid": "xyz"}),
            "unsupported kty \"XYZ\"",
        ),
        (
            ec("p521", json!({"crv": "P-521"})),
            "unsupported EC curve \"P-521\"",
        ),
        (ec("no-crv", json!({"crv": null})), "missing crv"),
        (
            ec("short-x", json!({"x": b64(&[1; 31])})),
            "x and y must be 32 bytes for this curve",
        ),
        (ec("no-y", json!({"y": null})), "missing y"),
        (ec("bad-b64", json!({"x": "!!!"})), "x is not base64url"),
        (
            ec("enc", json!({"use": "enc"})),
            "use is \"enc\", not \"sig\"",
        ),
        (
            ec("ops", json!({"key_ops": ["sign"]})),
            "key_ops does not include \"verify\"",
        ),
        (
            ec("private", json!({"d": "AAAA"})),
            "contains private key material (d)",
        ),
        (
            ec("wrong-alg", json!({"alg": "RS256"})),
            "alg \"RS256\" does not fit kty \"EC\"",
        ),
        (
            ec("enc-alg", json!({"alg": "RSA-OAEP"})),
            "alg \"RSA-OAEP\" is not a supported signature algorithm",
        ),
        (
            ec("../etc/passwd", json!({})),
            "kid must be 1 to 128 characters of [A-Za-z0-9._-]",
        ),
        (
            ec("good", json!({})),
            "duplicate kid; the first key with it is kept",
        ),
        (off_curve, "key material is not a valid ES256 public key"),
        (short_rsa, "RSA modulus is shorter than 2048 bits"),
        (even_rsa, "not a valid RSA public key: invalid modulus"),
        (
            json!({"kty": "OKP", "kid": "x448", "crv": "Ed448", "x": b64(&[1; 57])}),
            "unsupported OKP curve \"Ed448\"",
        ),
        (
            json!({"kty": "OKP", "kid": "short-ed", "crv": "Ed25519", "x": b64(&[1; 31])}),
            "Ed25519 x must be 32 bytes",
        ),
        (json!({"kty": "oct", "kid": "no-k"}), "missing k"),
    ];
    let mut keys = vec![good.jwk.clone()];
    keys.extend(cases.iter().map(|(jwk, _)| jwk.clone()));
    keys.push(json!("not an object"));
    let set = KeySet::from_json(&doc(&keys)).unwrap();

    assert_eq!(set.len(), 1, "only the good key is kept");
    assert!(set.get("good").is_some());
    let got: Vec<(usize, Option<&str>, &str)> = set
        .rejected()
        .iter()
        .map(|r| (r.index, r.kid.as_deref(), r.reason.as_str()))
        .collect();
    for (i, (jwk, reason)) in cases.iter().enumerate() {
        let kid = jwk["kid"].as_str();
        assert_eq!(got[i], (i + 1, kid, *reason), "case {i}");
    }
    let last = got.last().unwrap();
    assert_eq!((last.0, last.1), (cases.len() + 1, None));
    assert!(last.2.starts_with("not a usable JWK"), "{last:?}");
    assert_eq!(got.len(), cases.len() + 1);
}

#[test]
fn a_rejected_key_is_named_in_its_message_without_its_material() {
    let rejected = RejectedKey {
        index: 3,
        kid: Some("k1".to_owned()),
        reason: "missing n".to_owned(),
    };
    assert_eq!(rejected.to_string(), "key 3 (kid \"k1\"): missing n");
}

#[test]
fn a_document_with_no_usable_key_is_an_error() {
    let err = KeySet::from_json(&doc(&[json!({"kty": "oct", "kid": "a", "k": "AA"})])).unwrap_err();
    match &err {
        JwksError::NoUsableKeys { rejected } => assert_eq!(rejected.len(), 1),
        other => panic!("wrong error: {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "jwks has no usable key (key 0 (kid \"a\"): HMAC secret is shorter than 32 bytes)"
    );
    assert!(matches!(
        KeySet::from_json(br#"{"keys": []}"#),
        Err(JwksError::NoUsableKeys { .. })
    ));
    assert!(matches!(KeySet::from_json(b"{"), Err(JwksError::Json(_))));
    assert!(matches!(
        KeySet::from_json(br#"{"kty": "oct"}"#),
        Err(JwksError::Json(_))
    ));
}

#[test]
fn a_key_without_kid_is_usable_only_as_the_only_key() {
    let mut anonymous = TestKey::ec_p256("unused");
    anonymous.jwk.as_object_mut().unwrap().remove("kid");
    let set = KeySet::from_json(&jwks_json(&[&anonymous])).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.kids().count(), 0);
    assert!(set.only().is_some());
    assert!(set.only().unwrap().kid().is_none());

    let named = TestKey::ec_p256("named");
    let set = KeySet::from_json(&jwks_json(&[&anonymous, &named])).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.only().is_none());
    assert_eq!(set.kids().collect::<Vec<_>>(), ["named"]);
}

#[test]
fn kids_are_limited_to_a_safe_alphabet_and_length() {
    for ok in [
        "a",
        "key-1",
        "2024_05.rsa",
        "A-Za-z0-9._-",
        &"k".repeat(128),
    ] {
        assert!(kid_is_acceptable(ok), "{ok:?}");
    }
    let long = "k".repeat(129);
    for bad in [
        "",
        "../x",
        "a/b",
        "' OR 1=1 --",
        "a b",
        "k\u{e9}y",
        "a%2f",
        "a\\b",
        long.as_str(),
    ] {
        assert!(!kid_is_acceptable(bad), "{bad:?}");
    }
}

#[test]
fn the_same_keys_reordered_or_reformatted_are_not_a_change() {
    let a = TestKey::ec_p256("a");
    let b = TestKey::ed25519("b");
    let one = KeySet::from_json(&jwks_json(&[&a, &b])).unwrap();
    let pretty = serde_json::to_vec_pretty(&json!({"keys": [b.jwk, a.jwk]})).unwrap();
    let two = KeySet::from_json(&pretty).unwrap();
    assert_eq!(one.fingerprint, two.fingerprint);
    let three = KeySet::from_json(&jwks_json(&[&a])).unwrap();
    assert_ne!(one.fingerprint, three.fingerprint);
}

#[test]
fn refresh_now_swaps_in_new_keys_and_bumps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestKey::ec_p256("a");
    let b = TestKey::ec_p256("b");
    let path = write_jwks(dir.path(), &[&a]);
    let jwks = Jwks::load(JwksSource::File(path), Duration::from_secs(60)).unwrap();
    assert_eq!(jwks.version(), 1);
    assert_eq!(jwks.current().kids().collect::<Vec<_>>(), ["a"]);

    // Unchanged file: no change, same version.
    assert!(!jwks.refresh_now().unwrap());
    assert_eq!(jwks.version(), 1);

    write_jwks(dir.path(), &[&a, &b]);
    assert!(jwks.refresh_now().unwrap());
    assert_eq!(jwks.version(), 2);
    assert_eq!(jwks.current().kids().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(jwks.current().version(), 2);
}

#[test]
fn a_failed_refresh_keeps_the_current_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestKey::ec_p256("a");
    let path = write_jwks(dir.path(), &[&a]);
    let jwks = Jwks::load(JwksSource::File(path.clone()), Duration::from_secs(60)).unwrap();

    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(jwks.refresh_now(), Err(JwksError::Json(_))));
    std::fs::write(&path, br#"{"keys": [{"kty": "oct", "k": "AA"}]}"#).unwrap();
    assert!(matches!(
        jwks.refresh_now(),
        Err(JwksError::NoUsableKeys { .. })
    ));
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(jwks.refresh_now(), Err(JwksError::Read { .. })));

    assert_eq!(jwks.version(), 1);
    assert!(jwks.current().get("a").is_some());
}

#[test]
fn the_first_load_must_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = Jwks::load(JwksSource::File(missing), Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, JwksError::Read { .. }), "{err}");
    assert!(err.to_string().starts_with("reading jwks file "), "{err}");

    let err = Jwks::load(
        JwksSource::Url("ftp://idp.example/jwks".to_owned()),
        Duration::from_secs(60),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "jwks url ftp://idp.example/jwks is not http:// or https://"
    );
}

#[test]
fn refresh_if_due_refreshes_once_per_interval() {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().unwrap();
    let a = TestKey::ec_p256("a");
    let b = TestKey::ec_p256("b");
    let c = TestKey::ec_p256("c");
    let path = write_jwks(dir.path(), &[&a]);
    let jwks = Jwks::load(JwksSource::File(path), Duration::from_secs(60)).unwrap();

    write_jwks(dir.path(), &[&b]);
    // The first call only starts the schedule.
    assert!(!jwks.refresh_if_due(clock.now()), "t={:?}", clock.elapsed());
    clock.advance(Duration::from_millis(59_999));
    assert!(!jwks.refresh_if_due(clock.now()), "t={:?}", clock.elapsed());
    assert!(jwks.current().get("a").is_some());
    clock.advance(Duration::from_millis(1));
    assert!(jwks.refresh_if_due(clock.now()), "t={:?}", clock.elapsed());
    assert!(jwks.current().get("b").is_some());

    // The interval restarts from that refresh.
    write_jwks(dir.path(), &[&c]);
    clock.advance(Duration::from_secs(30));
    assert!(!jwks.refresh_if_due(clock.now()), "t={:?}", clock.elapsed());
    clock.advance(Duration::from_secs(30));
    assert!(jwks.refresh_if_due(clock.now()), "t={:?}", clock.elapsed());
    assert_eq!(jwks.current().kids().collect::<Vec<_>>(), ["c"]);
}

#[test]
fn refetch_for_an_unknown_kid_happens_at_most_once_per_min_refetch() {
    let clock = ManualClock::new();
    let dir = tempfile::tempdir().unwrap();
    let a = TestKey::ec_p256("a");
    let b = TestKey::ec_p256("b");
    let c = TestKey::ec_p256("c");
    let path = write_jwks(dir.path(), &[&a]);
    let jwks = Jwks::load(JwksSource::File(path), Duration::from_secs(300)).unwrap();

    write_jwks(dir.path(), &[&a, &b]);
    assert!(
        jwks.refetch_for_unknown_kid(clock.now()),
        "t={:?}",
        clock.elapsed()
    );
    assert!(jwks.current().get("b").is_some());

    // Within MIN_REFETCH nothing is fetched, even though the file changed again.
    write_jwks(dir.path(), &[&a, &b, &c]);
    clock.advance(MIN_REFETCH - Duration::from_millis(1));
    assert!(
        !jwks.refetch_for_unknown_kid(clock.now()),
        "t={:?}",
        clock.elapsed()
    );
    assert!(jwks.current().get("c").is_none());

    clock.advance(Duration::from_millis(1));
    assert!(
        jwks.refetch_for_unknown_kid(clock.now()),
        "t={:?}",
        clock.elapsed()
    );
    assert!(jwks.current().get("c").is_some());

    // A refetch that finds nothing new says so (the caller then does not retry).
    clock.advance(MIN_REFETCH);
    assert!(
        !jwks.refetch_for_unknown_kid(clock.now()),
        "t={:?}",
        clock.elapsed()
    );
}

/// Serves `answers` in order, one per connection, on a loopback port; returns the URL.
fn serve(answers: Vec<(u16, Vec<u8>)>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            assert!(request.starts_with(b"GET /jwks.json "), "{request:?}");
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
            served += 1;
        }
        served
    });
    (url, handle)
}

#[test]
fn a_url_source_is_fetched_over_http_and_a_failing_endpoint_keeps_the_keys() {
    let a = TestKey::ed25519("a");
    let b = TestKey::ed25519("b");
    let (url, server) = serve(vec![
        (200, jwks_json(&[&a])),
        (500, b"oops".to_vec()),
        (200, jwks_json(&[&b])),
    ]);
    let jwks = Jwks::load(JwksSource::Url(url.clone()), Duration::from_secs(60)).unwrap();
    assert_eq!(jwks.current().kids().collect::<Vec<_>>(), ["a"]);

    let err = jwks.refresh_now().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("fetching jwks {url}: status 500 Internal Server Error")
    );
    assert!(jwks.current().get("a").is_some());

    assert!(jwks.refresh_now().unwrap());
    assert_eq!(jwks.current().kids().collect::<Vec<_>>(), ["b"]);
    assert_eq!(server.join().unwrap(), 3);
}

#[test]
fn an_unreachable_url_fails_within_the_fetch_timeout() {
    // A port that was just free: the connection is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let err = Jwks::load(JwksSource::Url(url), Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, JwksError::Fetch { .. }), "{err}");
}
