//! The `WWW-Authenticate` challenges of a 401: one per scheme a route takes when nothing
//! was presented, and the scheme of the credentials when they were refused, so a client is
//! told in the language it spoke (RFC 9110 §11.6.1).
//!
//! ```text
//! Bearer   Bearer realm="gateway"[, error="invalid_token", error_description="..."]   RFC 6750
//! Token    Token realm="gateway"[, error="invalid_token", error_description="..."]    InfluxDB 2.x
//! Basic    Basic realm="gateway", charset="UTF-8"                                     RFC 7617
//! header   ApiKey realm="gateway", header="x-api-key"[, error=..., ...]               ours
//! ```
//!
//! Basic has no parameter for a reason, so its refusal is the bare challenge; the reason is
//! in the JSON body of every 401. Descriptions are fixed phrases of the gateway's (never
//! anything from the request), so they fit the quoted-string grammar as they are.

use http::HeaderName;

/// The realm of every challenge.
pub const REALM: &str = "gateway";

/// How credentials were, or may be, presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer <JWT>`.
    Bearer,
    /// `Authorization: Token <key>` (InfluxDB 2.x clients, Telegraf).
    Token,
    /// `Authorization: Basic`, or InfluxDB 1.x `u`/`p` query parameters: the password is
    /// the key.
    Basic,
    /// A header of the operator's naming that carries the key as it is.
    Header(HeaderName),
}

impl Scheme {
    /// The challenge of a request that presented nothing.
    pub fn challenge(&self) -> String {
        match self {
            Scheme::Bearer => format!("Bearer realm=\"{REALM}\""),
            Scheme::Token => format!("Token realm=\"{REALM}\""),
            Scheme::Basic => format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
            Scheme::Header(h) => format!("ApiKey realm=\"{REALM}\", header=\"{h}\""),
        }
    }

    /// The challenge refusing credentials of this scheme, with `description` where the
    /// scheme has room for it.
    pub fn refusal(&self, description: &str) -> String {
        match self {
            Scheme::Basic => self.challenge(),
            _ => format!(
                "{}, error=\"invalid_token\", error_description=\"{description}\"",
                self.challenge()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_challenges_in_its_own_words() {
        assert_eq!(Scheme::Bearer.challenge(), "Bearer realm=\"gateway\"");
        assert_eq!(Scheme::Token.challenge(), "Token realm=\"gateway\"");
        assert_eq!(
            Scheme::Basic.challenge(),
            "Basic realm=\"gateway\", charset=\"UTF-8\""
        );
        let h = Scheme::Header(HeaderName::from_static("x-api-key"));
        assert_eq!(
            h.challenge(),
            "ApiKey realm=\"gateway\", header=\"x-api-key\""
        );
        assert_eq!(
            Scheme::Token.refusal("unknown key"),
            "Token realm=\"gateway\", error=\"invalid_token\", error_description=\"unknown key\""
        );
        assert_eq!(
            Scheme::Basic.refusal("unknown key"),
            Scheme::Basic.challenge(),
            "Basic has no error parameter"
        );
        assert!(h.refusal("unknown key").ends_with(
            "header=\"x-api-key\", error=\"invalid_token\", error_description=\"unknown key\""
        ));
    }
}
