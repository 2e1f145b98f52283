//! The `api_keys` block and the key file: every rule, with the line and column it reports.

use super::*;
use crate::config::parse_policy;

fn parse(text: &str) -> Result<Vec<KeyEntry>, String> {
    parse_key_file(text, Path::new("keys.yaml")).map_err(|e| e.to_string())
}

const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// An Argon2id PHC string of `key` at a cheap cost (tests run unoptimised).
pub(crate) fn cheap_argon2(key: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"saltsaltsalt").unwrap();
    hasher
        .hash_password(key.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

#[test]
fn the_entries_hash_key_makes_are_accepted_by_the_file_format() {
    let hex = sha256_hex(b"test");
    assert_eq!(hex, DIGEST, "as sha256sum prints it");
    let phc = argon2_phc(b"test").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    let entries = parse(&format!(
        "keys:\n  - {{ sha256: {hex}, identity: a }}\n  - {{ argon2: \"{phc}\", identity: b }}\n"
    ))
    .unwrap();
    assert_eq!(entries.len(), 2);
    assert_ne!(argon2_phc(b"test").unwrap(), phc, "a new salt each time");
}

#[test]
fn a_key_file_of_digests_compiles_into_its_entries() {
    let phc = cheap_argon2("s3cret");
    let text = format!(
        "keys:\n  - sha256: {}\n    identity: telegraf-eu\n    tenant: acme\n    roles: [writer, writer, reader]\n  - argon2: \"{phc}\"\n    identity: grafana\n",
        DIGEST.to_uppercase()
    );
    let entries = parse(&text).unwrap();
    assert_eq!(entries.len(), 2);
    let StoredKey::Sha256(d) = &entries[0].stored else {
        panic!("sha256 entry")
    };
    assert_eq!(d[0], 0x9f);
    assert_eq!(d[31], 0x08);
    assert_eq!(entries[0].identity, "telegraf-eu");
    assert_eq!(entries[0].tenant.as_deref(), Some("acme"));
    assert_eq!(
        entries[0].roles,
        vec!["writer", "reader"],
        "duplicates folded"
    );
    assert_eq!(entries[0].line, 2);
    assert_eq!(entries[1].stored, StoredKey::Argon2(phc));
    assert_eq!(entries[1].tenant, None);
    assert!(entries[1].roles.is_empty());
}

#[test]
fn an_empty_file_or_list_holds_no_key() {
    assert_eq!(parse(""), Ok(Vec::new()));
    assert_eq!(parse("keys: []\n"), Ok(Vec::new()));
}

#[test]
fn a_plain_key_is_refused_at_its_line_and_column() {
    let e = parse("keys:\n  - key: hunter2\n    identity: a\n").unwrap_err();
    assert!(
        e.starts_with("keys.yaml:2:10: keys[0].key: plain keys are not accepted"),
        "{e}"
    );
    // A key pasted where its digest belongs.
    let e = parse("keys:\n  - sha256: hunter2\n    identity: a\n").unwrap_err();
    assert!(
        e.starts_with(
            "keys.yaml:2:13: keys[0].sha256: not a SHA-256 digest (64 hex digits, 7 given)"
        ),
        "{e}"
    );
    assert!(e.contains("plain keys are not accepted"), "{e}");
    let e = parse("keys:\n  - argon2: hunter2\n    identity: a\n").unwrap_err();
    assert!(
        e.starts_with("keys.yaml:2:13: keys[0].argon2: not an Argon2 PHC string"),
        "{e}"
    );
    // Neither: nothing to check a key against.
    let e = parse("keys:\n  - identity: a\n").unwrap_err();
    assert!(
        e.starts_with("keys.yaml:2:5: keys[0]: give exactly one of sha256 or argon2"),
        "{e}"
    );
    let both = format!(
        "keys:\n  - {{ sha256: {DIGEST}, argon2: \"{}\", identity: a }}\n",
        cheap_argon2("x")
    );
    assert!(parse(&both).unwrap_err().contains("give exactly one of"));
}

#[test]
fn unknown_fields_are_refused_with_their_position() {
    let e = parse(&format!(
        "keys:\n  - sha256: {DIGEST}\n    identity: a\n    password: x\n"
    ))
    .unwrap_err();
    assert!(e.starts_with("keys.yaml:4:"), "{e}");
    assert!(e.contains("password"), "{e}");
}

#[test]
fn identities_tenants_and_roles_are_checked() {
    let e = parse(&format!(
        "keys:\n  - sha256: {DIGEST}\n    identity: \"\"\n    tenant: \"a\\tb\"\n    roles: [\"two words\"]\n"
    ))
    .unwrap_err();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("keys.yaml:3:15: keys[0].identity: must not be empty"),
        "{e}"
    );
    assert!(
        lines[1].contains("keys[0].tenant: must not contain control characters"),
        "{e}"
    );
    assert!(
        lines[2].contains("keys[0].roles[0]: a role is a non-empty word"),
        "{e}"
    );
}

#[test]
fn the_same_key_twice_is_refused_naming_the_first() {
    let e = parse(&format!(
        "keys:\n  - sha256: {DIGEST}\n    identity: a\n  - sha256: {}\n    identity: b\n",
        DIGEST.to_uppercase()
    ))
    .unwrap_err();
    assert!(
        e.starts_with("keys.yaml:4:13: keys[1].sha256: the same key as the entry at line 2"),
        "{e}"
    );
}

#[test]
fn an_argon2_entry_beyond_the_cost_bounds_is_refused() {
    let huge = "$argon2id$v=19$m=1048576,t=3,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let e = parse(&format!("keys:\n  - argon2: \"{huge}\"\n    identity: a\n")).unwrap_err();
    assert!(e.contains("is beyond m=262144"), "{e}");
    let scrypt = "$scrypt$ln=16,r=8,p=1$c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let e = parse(&format!(
        "keys:\n  - argon2: \"{scrypt}\"\n    identity: a\n"
    ))
    .unwrap_err();
    assert!(e.contains("is not argon2id"), "{e}");
}

#[test]
fn a_missing_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_key_file(&dir.path().join("nope.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.yaml"), "{e}");
    assert!(e.contains("cannot read the key file"), "{e}");
}

fn policy(block: &str) -> String {
    format!(
        "authenticators:\n  keys:\n    {block}\npools:\n  p:\n    backends: [{{ address: 127.0.0.1:1 }}]\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    auth: {{ any_of: [keys] }}\n"
    )
}

#[test]
fn the_policy_block_names_a_file_beside_the_policy_and_an_optional_header() {
    let p = parse_policy(
        &policy("api_keys: { file: keys/api.yaml, header: X-API-Key }"),
        Path::new("/etc/gw/policies/p.yaml"),
    )
    .unwrap();
    let a = &p.authenticators["keys"];
    let crate::config::policy::AuthenticatorKind::ApiKeys(c) = &a.kind else {
        panic!("{:?}", a.kind)
    };
    assert_eq!(c.file, Path::new("/etc/gw/policies/keys/api.yaml"));
    assert_eq!(c.header.as_ref().map(|h| h.as_str()), Some("x-api-key"));
}

#[test]
fn the_policy_block_refuses_a_bad_header_and_a_second_kind() {
    let e = parse_policy(
        &policy("api_keys: { file: k.yaml, header: \"X API\" }"),
        Path::new("p.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e == "p.yaml:3:39: authenticators.keys.api_keys.header: \"X API\" is not a header name",
        "{e}"
    );
    let e = parse_policy(
        &policy("api_keys: { file: k.yaml, header: Authorization }"),
        Path::new("p.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Authorization is read anyway"), "{e}");
    let e = parse_policy(
        &policy("api_keys: { file: k.yaml }\n    mtls: {}"),
        Path::new("p.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("give exactly one of jwt, mtls or api_keys"),
        "{e}"
    );
    let e = parse_policy(
        &policy("api_keys: { file: k.yaml, plain: x }"),
        Path::new("p.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("p.yaml:3:"), "{e}");
}
