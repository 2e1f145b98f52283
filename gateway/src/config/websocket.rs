//! A route's WebSocket setting, as written and compiled: whether the route lets a request
//! upgrade to a WebSocket, and how long the upgraded connection may stay silent. Kept apart
//! from `policy.rs`, which calls [`compile`] while it compiles a route; what an upgrade
//! does at run time lives in `websocket.rs`.
//!
//! ```yaml
//! websocket: true                      # upgrades allowed, idle timeout 1h
//! websocket: { idle_timeout: 10m }     # upgrades allowed, idle timeout 10m
//! websocket: false                     # the default: an upgrade is refused (403)
//! ```

use operator_config::Collector;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::time::Duration;

/// How long an upgraded connection may pass no byte either way, unless the route says:
/// an hour, Envoy's default connection idle timeout. A WebSocket application that pings
/// (every 30 to 60 s is usual) is never cut by it; a peer that vanished without a close is.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest idle timeout a route may set: a day.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A route's `websocket:` as written: `true`/`false`, or its settings (which allow).
#[derive(Debug)]
pub enum RawWebsocket {
    Enabled(bool),
    Settings(RawWebsocketSettings),
}

/// `websocket: { idle_timeout: 10m }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebsocketSettings {
    /// No byte either way for this long closes the upgraded connection.
    #[serde(default)]
    pub idle_timeout: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawWebsocket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = RawWebsocket;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or { idle_timeout: <duration> }")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawWebsocket, E> {
                Ok(RawWebsocket::Enabled(v))
            }

            // The settings keep their own errors (an unknown key names itself and the
            // known ones), which an untagged enum would fold into "no variant matched".
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawWebsocket, A::Error> {
                RawWebsocketSettings::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawWebsocket::Settings)
            }
        }
        d.deserialize_any(Either)
    }
}

/// A route that takes WebSocket upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketRoute {
    /// No byte either way for this long closes the upgraded connection (both sides). It
    /// stands for the route's request timeout on every wait of an upgrade request at its
    /// backend, the wait for the handshake's answer included.
    pub idle_timeout: Duration,
}

/// Compiles a route's `websocket:` (`None` when upgrades are not allowed). `methods` is the
/// route's `match.methods`, if it names any: a WebSocket handshake is a `GET`
/// (RFC 6455 §4.1), so a route that matches no `GET` cannot take one.
pub fn compile(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<RawWebsocket>>,
    methods: Option<&[String]>,
    field: &str,
) -> Option<WebSocketRoute> {
    let raw = raw?;
    let idle_timeout = match &raw.value {
        RawWebsocket::Enabled(false) => return None,
        RawWebsocket::Enabled(true) => DEFAULT_IDLE_TIMEOUT,
        RawWebsocket::Settings(s) => match &s.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(v) => {
                let name = format!("{field}.idle_timeout");
                match e.duration(v, &name, false) {
                    Some(d) if d <= MAX_IDLE_TIMEOUT => d,
                    Some(_) => {
                        e.at(v, name, "must be at most 24h");
                        DEFAULT_IDLE_TIMEOUT
                    }
                    None => DEFAULT_IDLE_TIMEOUT,
                }
            }
        },
    };
    if methods.is_some_and(|m| !m.iter().any(|m| m == "GET")) {
        e.at(
            raw,
            field,
            "a WebSocket handshake is a GET, which this route's match.methods leaves out",
        );
    }
    Some(WebSocketRoute { idle_timeout })
}

#[cfg(test)]
mod tests {
    use super::*;
    use operator_config::error::ConfigErrors;
    use std::path::Path;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        websocket: Spanned<RawWebsocket>,
    }

    /// The compiled setting of `yaml` (a `websocket:` line), and the errors as printed.
    fn compiled(yaml: &str, methods: Option<&[String]>) -> (Option<WebSocketRoute>, String) {
        let raw: Holder = serde_saphyr::from_str(yaml).unwrap();
        let mut out = ConfigErrors::default();
        let mut e = Collector::new(Path::new("p.yaml"), &mut out);
        let ws = compile(&mut e, Some(&raw.websocket), methods, "routes[0].websocket");
        (ws, out.to_string())
    }

    fn idle(d: Duration) -> Option<WebSocketRoute> {
        Some(WebSocketRoute { idle_timeout: d })
    }

    #[test]
    fn true_allows_with_the_default_idle_timeout_and_false_does_not() {
        assert_eq!(
            compiled("websocket: true\n", None),
            (idle(DEFAULT_IDLE_TIMEOUT), String::new())
        );
        assert_eq!(compiled("websocket: false\n", None), (None, String::new()));
        assert_eq!(
            compiled("websocket: {}\n", None),
            (idle(DEFAULT_IDLE_TIMEOUT), String::new())
        );
        assert_eq!(
            compiled("websocket: { idle_timeout: 90s }\n", None),
            (idle(Duration::from_secs(90)), String::new())
        );
    }

    #[test]
    fn a_bad_idle_timeout_is_reported_where_it_stands() {
        let (_, errors) = compiled("websocket: { idle_timeout: 0s }\n", None);
        assert_eq!(
            errors,
            "p.yaml:1:28: routes[0].websocket.idle_timeout: must be more than 0"
        );
        let (_, errors) = compiled("websocket: { idle_timeout: 25h }\n", None);
        assert_eq!(
            errors,
            "p.yaml:1:28: routes[0].websocket.idle_timeout: must be at most 24h"
        );
        let (_, errors) = compiled("websocket: { idle_timeout: soon }\n", None);
        assert!(
            errors.starts_with("p.yaml:1:28: routes[0].websocket.idle_timeout: "),
            "{errors}"
        );
    }

    #[test]
    fn a_route_that_matches_no_get_cannot_take_a_handshake() {
        let post = ["POST".to_string()];
        let (_, errors) = compiled("websocket: true\n", Some(&post));
        assert_eq!(
            errors,
            "p.yaml:1:12: routes[0].websocket: a WebSocket handshake is a GET, which this route's match.methods leaves out"
        );
        let both = ["POST".to_string(), "GET".to_string()];
        assert_eq!(compiled("websocket: true\n", Some(&both)).1, "");
    }

    #[test]
    fn a_policy_names_the_file_line_column_and_field_of_a_bad_setting() {
        let policy = |ws: &str| {
            format!(
                "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: /, methods: [POST] }}\n    pool: p\n    websocket: {ws}\n"
            )
        };
        let err = crate::config::parse_policy(&policy("{ idle_timeout: 0s }"), Path::new("w.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("w.yaml:9:32: routes[0].websocket.idle_timeout: must be more than 0"),
            "{err}"
        );
        assert!(
            err.contains("w.yaml:9:16: routes[0].websocket: a WebSocket handshake is a GET"),
            "{err}"
        );
        let err = crate::config::parse_policy(&policy("{ idle: 1m }"), Path::new("w.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("w.yaml:9:"), "{err}");
        assert!(err.contains("idle_timeout"), "{err}");
    }

    #[test]
    fn a_websocket_route_to_an_http2_pool_is_refused_at_its_setting() {
        let policy = |protocol: &str| {
            format!(
                "pools:\n  p:\n    protocol: {protocol}\n    backends:\n      - {{ address: 127.0.0.1:1 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    websocket: true\n"
            )
        };
        let err = crate::config::parse_policy(&policy("h2c"), Path::new("w.yaml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "w.yaml:10:16: routes[0].websocket: pool \"p\" speaks HTTP/2 (protocol: h2c); WebSockets need an http1 pool"
        );
        assert!(crate::config::parse_policy(&policy("http1"), Path::new("w.yaml")).is_ok());
    }

    #[test]
    fn unknown_settings_and_other_values_are_refused_when_parsed() {
        let typo = serde_saphyr::from_str::<Holder>("websocket: { idle_timout: 1m }\n")
            .unwrap_err()
            .to_string();
        assert!(
            typo.contains("idle_timout") && typo.contains("idle_timeout"),
            "{typo}"
        );
        let text = serde_saphyr::from_str::<Holder>("websocket: \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("true, false or { idle_timeout: <duration> }"),
            "{text}"
        );
    }
}
