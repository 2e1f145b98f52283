//! The policy's authentication settings as the compiled policy holds them: the types are
//! configuration (the policy compiler makes them, `auth/` reads them); what they do lives
//! with the authenticators (`auth/jwt.rs`, `auth/jwks.rs`, `auth/mtls.rs`).

use jsonwebtoken::Algorithm;
use std::path::PathBuf;
use std::time::Duration;

/// How one JWT authenticator is configured (the policy's `jwt` block, once parsed).
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    pub source: JwksSource,
    /// The certificate authorities an `https://` source (and its discovery) is verified
    /// against.
    pub trust: TrustRoots,
    pub refresh: Duration,
    /// Algorithms accepted at all; a token whose `alg` is not here is refused.
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    /// When set, the token's `aud` (string or array) must contain it. When unset, `aud`
    /// is not checked.
    pub audience: Option<String>,
    /// Clock-skew allowance for `exp` and `nbf`, in whole seconds.
    pub leeway: Duration,
    /// The claim naming the caller (default `sub`).
    pub identity_claim: String,
    /// A string array, or a space-separated string like OAuth's `scope` (default `roles`).
    pub roles_claim: String,
    pub tenant_claim: Option<String>,
    pub max_token_bytes: usize,
    /// Keep the `Authorization` header for the backend (default: removed once verified,
    /// as Envoy's `forward: false`: the backend gets the identity headers, not a token it
    /// could replay).
    pub forward_token: bool,
    /// Claims copied into the identity (those rate-limit keys use).
    pub kept_claims: Vec<String>,
}

/// Where a key set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    /// An `https://` URL (an identity provider), or `http://` (a local one, a sidecar).
    Url(String),
    /// OpenID Connect discovery from this issuer URL: its
    /// `/.well-known/openid-configuration` names the key set (`jwks_uri`); both are read at
    /// every refresh, so a provider that moves its key set is followed.
    Discovery(String),
}

/// Which certificate authorities an `https://` key set or discovery document is verified
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustRoots {
    /// The Mozilla root program, built in (webpki-roots): what public identity providers
    /// (Auth0, Okta, Entra ID, Google...) are signed by.
    #[default]
    WebPki,
    /// Only the CAs of this PEM file (a private identity provider). Read again at every
    /// fetch, so a replaced file applies from the next refresh on.
    CaFile(PathBuf),
}

/// Which name of the certificate is the caller's identity (`mtls: { identity: ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The first URI subject alternative name (SPIFFE ids, device URNs).
    SanUri,
    /// The first DNS subject alternative name.
    SanDns,
    /// The subject's common name.
    Cn,
}
