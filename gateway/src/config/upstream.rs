//! How the gateway speaks to a pool's backends, compiled: the protocol (`http1`, `h2` over
//! TLS by ALPN, `h2c` in plaintext by prior knowledge) and TLS (`sni`, `ca`, `client_cert` +
//! `client_key`, `verify`). Kept apart from `policy.rs`, which calls [`compile`] for each
//! pool. The files named here are read when the policy goes into service
//! (`connect/tls.rs`), where an unreadable one is an error at the position kept here.

use operator_config::Collector;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::path::{Path, PathBuf};

/// `tls:` of a pool, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// The name sent in the handshake and checked against the backend's certificate.
    #[serde(default)]
    pub sni: Option<Spanned<String>>,
    /// PEM bundle of the CAs the backends' certificates must chain to (default: the
    /// system's roots).
    #[serde(default)]
    pub ca: Option<Spanned<String>>,
    /// The gateway's client certificate (PEM chain) and key, for backends that ask for one.
    #[serde(default)]
    pub client_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub client_key: Option<Spanned<String>>,
    /// `false` accepts any certificate (testing only); default `true`.
    #[serde(default)]
    pub verify: Option<Spanned<bool>>,
}

/// The HTTP version spoken to a pool's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS when the pool has `tls`).
    #[default]
    Http1,
    /// HTTP/2 over TLS, chosen by ALPN `h2` (the pool must have `tls`).
    H2,
    /// HTTP/2 in plaintext by prior knowledge.
    H2c,
}

impl Protocol {
    /// As operators write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2 => "h2",
            Protocol::H2c => "h2c",
        }
    }

    /// Whether it is HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::H2 | Protocol::H2c)
    }
}

/// The gateway's certificate for backends that verify their clients (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where an upstream TLS setting is written, for an error found when its files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// `pools.p.tls.ca`.
    pub field: String,
}

/// TLS to a pool's backends, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The name to send and verify; `None`: the backend's host name when it is given by
    /// name, its IP address otherwise (checked against the certificate's IP names).
    pub sni: Option<String>,
    /// `None`: the system's roots.
    pub ca: Option<PathBuf>,
    pub client: Option<ClientCert>,
    /// Whether the backend's certificate is checked (chain and name).
    pub verify: bool,
    /// Where `ca` is written (or `tls` itself when it is absent).
    pub ca_at: Position,
    /// Where `client_cert` is written (or `tls` itself).
    pub client_at: Position,
}

impl UpstreamTls {
    /// Every file it reads.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.ca.iter().cloned().collect();
        if let Some(c) = &self.client {
            v.push(c.cert.clone());
            v.push(c.key.clone());
        }
        v
    }
}

fn position<T>(e: &Collector<'_>, v: &Spanned<T>, field: String) -> Position {
    Position {
        file: e.file().to_path_buf(),
        line: v.referenced.line(),
        column: v.referenced.column(),
        field,
    }
}

/// Compiles a pool's `protocol` and `tls` (`field` is `pools.NAME`); relative file names are
/// taken from the policy file's folder. `h2` needs `tls`, `h2c` refuses it, a client
/// certificate needs its key and the other way round, and `sni` must be a DNS name or an
/// IP address.
pub fn compile(
    e: &mut Collector<'_>,
    protocol: Option<&Spanned<String>>,
    tls: Option<&Spanned<RawUpstreamTls>>,
    field: &str,
) -> (Protocol, Option<UpstreamTls>) {
    let proto = match protocol.map(|p| (p, p.value.as_str())) {
        None | Some((_, "http1")) => Protocol::Http1,
        Some((_, "h2")) => Protocol::H2,
        Some((_, "h2c")) => Protocol::H2c,
        Some((p, other)) => {
            e.at(
                p,
                format!("{field}.protocol"),
                format!("{other:?}: expected http1, h2 or h2c"),
            );
            Protocol::Http1
        }
    };
    match (proto, protocol, tls) {
        (Protocol::H2, Some(p), None) => e.at(
            p,
            format!("{field}.protocol"),
            "h2 is HTTP/2 over TLS: give the pool a tls block, or use h2c for plaintext",
        ),
        (Protocol::H2c, Some(p), Some(_)) => e.at(
            p,
            format!("{field}.protocol"),
            "h2c is HTTP/2 in plaintext: use h2 with tls",
        ),
        _ => {}
    }
    let Some(raw) = tls else {
        return (proto, None);
    };
    let t = &raw.value;
    let base = e.file().parent().unwrap_or(Path::new(".")).to_path_buf();
    let tls_at = position(e, raw, format!("{field}.tls"));
    let sni = t.sni.as_ref().and_then(|s| {
        let name = s.value.trim();
        if rustls::pki_types::ServerName::try_from(name).is_ok() && !name.is_empty() {
            Some(name.to_string())
        } else {
            e.at(
                s,
                format!("{field}.tls.sni"),
                format!("{:?} is not a DNS name or an IP address", s.value),
            );
            None
        }
    });
    let ca = t.ca.as_ref().map(|c| base.join(&c.value));
    let ca_at = t.ca.as_ref().map_or_else(
        || tls_at.clone(),
        |c| position(e, c, format!("{field}.tls.ca")),
    );
    let client = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => Some(ClientCert {
            cert: base.join(&c.value),
            key: base.join(&k.value),
        }),
        (Some(c), None) => {
            e.at(
                c,
                format!("{field}.tls.client_cert"),
                "client_cert needs client_key",
            );
            None
        }
        (None, Some(k)) => {
            e.at(
                k,
                format!("{field}.tls.client_key"),
                "client_key needs client_cert",
            );
            None
        }
        (None, None) => None,
    };
    let client_at = t.client_cert.as_ref().map_or_else(
        || tls_at.clone(),
        |c| position(e, c, format!("{field}.tls.client_cert")),
    );
    let tls = UpstreamTls {
        sni,
        ca,
        client,
        verify: t.verify.as_ref().is_none_or(|v| v.value),
        ca_at,
        client_at,
    };
    (proto, Some(tls))
}

#[cfg(test)]
mod tests {
    use crate::config::parse_policy;
    use std::path::Path;

    fn pool(extra: &str) -> String {
        format!(
            "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\n{extra}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n"
        )
    }

    fn errors(extra: &str) -> String {
        match parse_policy(&pool(extra), Path::new("pol/p.yaml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_pool_speaks_http1_in_plaintext_unless_told_otherwise() {
        let p = parse_policy(&pool(""), Path::new("p.yaml")).unwrap();
        assert_eq!(p.pools["p"].protocol, super::Protocol::Http1);
        assert_eq!(p.pools["p"].tls, None);
    }

    #[test]
    fn tls_files_are_taken_from_the_policy_folder_and_verify_is_on_by_default() {
        let p = parse_policy(
            &pool("    protocol: h2\n    tls: { ca: ca.pem, client_cert: gw.pem, client_key: gw.key, sni: db.internal }\n"),
            Path::new("pol/p.yaml"),
        )
        .unwrap();
        let compiled = &p.pools["p"];
        assert_eq!(compiled.protocol, super::Protocol::H2);
        let tls = compiled.tls.as_ref().unwrap();
        assert_eq!(tls.ca.as_deref(), Some(Path::new("pol/ca.pem")));
        let client = tls.client.as_ref().unwrap();
        assert_eq!(client.cert, Path::new("pol/gw.pem"));
        assert_eq!(client.key, Path::new("pol/gw.key"));
        assert_eq!(tls.sni.as_deref(), Some("db.internal"));
        assert!(tls.verify);
        assert_eq!((tls.ca_at.line, tls.ca_at.column), (6, 16));
        assert_eq!(tls.ca_at.field, "pools.p.tls.ca");
        let off = parse_policy(&pool("    tls: { verify: false }\n"), Path::new("p.yaml")).unwrap();
        let tls = off.pools["p"].tls.as_ref().unwrap();
        assert!(!tls.verify);
        assert_eq!(tls.ca, None, "the system's roots");
    }

    #[test]
    fn h2_without_tls_is_refused_at_its_position() {
        assert_eq!(
            errors("    protocol: h2\n"),
            "pol/p.yaml:5:15: pools.p.protocol: h2 is HTTP/2 over TLS: give the pool a tls block, or use h2c for plaintext"
        );
    }

    #[test]
    fn h2c_with_tls_and_unknown_protocols_are_refused() {
        assert_eq!(
            errors("    protocol: h2c\n    tls: {}\n"),
            "pol/p.yaml:5:15: pools.p.protocol: h2c is HTTP/2 in plaintext: use h2 with tls"
        );
        assert_eq!(
            errors("    protocol: http3\n"),
            "pol/p.yaml:5:15: pools.p.protocol: \"http3\": expected http1, h2 or h2c"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_the_other_way_round() {
        assert_eq!(
            errors("    tls: { client_cert: gw.pem }\n"),
            "pol/p.yaml:5:25: pools.p.tls.client_cert: client_cert needs client_key"
        );
        assert_eq!(
            errors("    tls: { client_key: gw.key }\n"),
            "pol/p.yaml:5:24: pools.p.tls.client_key: client_key needs client_cert"
        );
    }

    #[test]
    fn sni_must_be_a_name_or_an_address_and_unknown_tls_keys_are_refused() {
        assert_eq!(
            errors("    tls: { sni: \"not a name\" }\n"),
            "pol/p.yaml:5:17: pools.p.tls.sni: \"not a name\" is not a DNS name or an IP address"
        );
        let e = errors("    tls: { cafile: x.pem }\n");
        assert!(e.starts_with("pol/p.yaml:5:"), "{e}");
        assert!(e.contains("cafile"), "{e}");
    }

    #[test]
    fn a_grpc_health_check_needs_http2_and_no_path() {
        assert_eq!(
            errors("    health_check: { grpc_service: db }\n"),
            "pol/p.yaml:5:35: pools.p.health_check.grpc_service: a gRPC health check needs protocol: h2 or h2c"
        );
        assert_eq!(
            errors("    protocol: h2c\n    health_check: { path: /x, grpc_service: db }\n"),
            "pol/p.yaml:6:27: pools.p.health_check.path: give path or grpc_service, not both"
        );
        let p = parse_policy(
            &pool("    protocol: h2c\n    health_check: { grpc_service: \"\" }\n"),
            Path::new("p.yaml"),
        )
        .unwrap();
        assert_eq!(p.pools["p"].health_check.grpc_service.as_deref(), Some(""));
    }
}
