//! The admin port's bearer token (`admin: { token_file }`): reload, purge, drain and
//! undrain require `Authorization: Bearer <token>` when it is set. Reading endpoints
//! (status, metrics, the dashboard, health) stay open, as Prometheus and load balancers
//! scrape them without credentials.
//!
//! Only the token's SHA-256 is kept, and a request's token is compared by digest in
//! constant time, so neither its length nor its bytes leak through timing.

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

/// Shortest token accepted: a guessable one is no protection.
const MIN_LEN: usize = 16;

/// The token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error(
        "the token must be at least {MIN_LEN} characters (after trimming white space); it has {0}"
    )]
    TooShort(usize),
    #[error("the token must be one line of visible ASCII characters")]
    NotOneLine,
}

/// The expected token, as its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token in `path` (white space around it ignored).
    pub fn read(path: &Path) -> Result<AdminToken, TokenError> {
        AdminToken::new(std::fs::read_to_string(path)?.trim())
    }

    pub fn new(token: &str) -> Result<AdminToken, TokenError> {
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotOneLine);
        }
        if token.len() < MIN_LEN {
            return Err(TokenError::TooShort(token.len()));
        }
        Ok(AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `headers` carry the token as `Authorization: Bearer <token>`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(given) = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = AdminToken::new("s3cret-admin-token-0001").unwrap();
        assert!(t.admits(&with(&["Bearer s3cret-admin-token-0001"])));
        assert!(t.admits(&with(&["bearer s3cret-admin-token-0001"])));
        assert!(!t.admits(&with(&[])));
        assert!(!t.admits(&with(&["Bearer s3cret-admin-token-0002"])));
        assert!(!t.admits(&with(&["Bearer s3cret-admin-token-000"])));
        assert!(!t.admits(&with(&["Basic s3cret-admin-token-0001"])));
        assert!(!t.admits(&with(&["s3cret-admin-token-0001"])));
        assert!(!t.admits(&with(&[
            "Bearer s3cret-admin-token-0001",
            "Bearer s3cret-admin-token-0001"
        ])));
    }

    #[test]
    fn short_or_multi_line_tokens_are_refused() {
        assert!(matches!(
            AdminToken::new("short"),
            Err(TokenError::TooShort(5))
        ));
        assert!(matches!(
            AdminToken::new("a-long-enough-token\nsecond"),
            Err(TokenError::NotOneLine)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  a-long-enough-token-here \n").unwrap();
        let t = AdminToken::read(&path).unwrap();
        assert!(t.admits(&with(&["Bearer a-long-enough-token-here"])));
        assert!(AdminToken::read(&dir.path().join("missing")).is_err());
    }
}
