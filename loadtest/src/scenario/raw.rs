//! The scenario as written: YAML shapes with a source position on every value a later check
//! may point at. Unknown keys are errors, so a typo never passes.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;

/// A scenario file, after variable substitution.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Spanned<String>,
    pub target: Spanned<String>,
    /// Open loop; exclusive with `concurrency`.
    #[serde(default)]
    pub stages: Option<Spanned<Vec<Spanned<RawStage>>>>,
    /// Closed loop; exclusive with `stages`, needs `duration`.
    #[serde(default)]
    pub concurrency: Option<Spanned<u64>>,
    #[serde(default)]
    pub duration: Option<Spanned<String>>,
    #[serde(default)]
    pub warmup: Option<Spanned<String>>,
    pub requests: Spanned<Vec<RawRequest>>,
    #[serde(default)]
    pub headers: Option<RawHeaders>,
    #[serde(default)]
    pub clients: Option<Spanned<u64>>,
    #[serde(default)]
    pub client_tokens_file: Option<Spanned<String>>,
    #[serde(default)]
    pub max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub seed: Option<Spanned<u64>>,
    #[serde(default)]
    pub events: Vec<RawEvent>,
    #[serde(default)]
    pub slo: Vec<Spanned<String>>,
    /// For an `https://` target.
    #[serde(default)]
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM bundle of the CAs that may sign the target's certificate.
    pub ca: Spanned<String>,
    /// A client certificate (mTLS) and its key, PEM.
    #[serde(default)]
    pub client_cert: Option<Spanned<String>>,
    #[serde(default)]
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub duration: Spanned<String>,
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub ramp_to: Option<Spanned<f64>>,
    #[serde(default)]
    pub warmup: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    #[serde(default)]
    pub weight: Option<Spanned<u64>>,
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    #[serde(default)]
    pub body_file: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: Option<RawHeaders>,
    #[serde(default)]
    pub client: Option<Spanned<u64>>,
    /// What each answer must hold (`check.rs`).
    #[serde(default)]
    pub check: Vec<Spanned<RawCheck>>,
}

/// One check: `status`, or `json` with `exists` or `equals`; `name` optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<u64>,
    #[serde(default)]
    pub json: Option<String>,
    #[serde(default)]
    pub exists: Option<bool>,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub at: Spanned<String>,
    pub run: Spanned<String>,
}

/// A map of header names to values, in the order written (a `BTreeMap` would sort them).
#[derive(Debug, Default)]
pub struct RawHeaders(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;

        impl<'de> Visitor<'de> for InOrder {
            type Value = RawHeaders;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of header names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut headers = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    headers.push(entry);
                }
                Ok(RawHeaders(headers))
            }
        }

        deserializer.deserialize_map(InOrder)
    }
}
