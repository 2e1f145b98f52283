//! Who a request is from, once authenticated: what later stages (authorization, rate-limit
//! keys, cache keys, balancing hash keys) and the backend get to know.

use std::fmt;

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Jwt,
    Mtls,
    /// A key of an `api_keys` file (Token, Basic, `u`/`p` or a header).
    ApiKey,
}

impl AuthMethod {
    /// As sent to the backend in `X-Gateway-Auth`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
            AuthMethod::ApiKey => "api_key",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The identity claim of a token (`sub` by default), the certificate's SAN URI,
    /// SAN DNS name or CN, or the `identity` of an API key's entry.
    pub subject: String,
    /// The tenant claim, when the authenticator names one and the token has it.
    pub tenant: Option<String>,
    /// Roles or scopes the caller holds.
    pub roles: Vec<String>,
    /// The token's claims that rate-limit keys name (name, value), scalars only.
    pub claims: Vec<(String, String)>,
    pub method: AuthMethod,
    /// The authenticator (policy name) that accepted it.
    pub authenticator: String,
}
