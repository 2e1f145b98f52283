//! A route's `access_log`: which of its requests get a line in the access log (when the
//! bootstrap file has one): `on` (the default), `off`, `errors` (answers of 400 and up) or
//! `{ sample: 1% }` (that share of its requests, drawn per request).

use super::raw::RawPercent;
use super::resilience::percent_ppm;
use operator_config::Collector;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// As written: a word (or a YAML boolean), or a sample.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRouteAccessLog {
    Switch(bool),
    Word(String),
    Sample(RawSample),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSample {
    pub sample: RawPercent,
}

/// Which requests of a route are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogRule {
    #[default]
    All,
    Off,
    /// Answers with a status of 400 or more.
    Errors,
    /// This many millionths of the requests.
    Sample {
        ppm: u32,
    },
}

impl LogRule {
    /// Whether a request answered `status` gets a line; `draw` gives a uniform number below
    /// one million, asked only for a sample.
    pub fn wants(self, status: u16, draw: impl FnOnce() -> u32) -> bool {
        match self {
            LogRule::All => true,
            LogRule::Off => false,
            LogRule::Errors => status >= 400,
            LogRule::Sample { ppm } => draw() < ppm,
        }
    }
}

/// The rule of a route; `on` when it says nothing.
pub fn compile(
    e: &mut Collector<'_>,
    raw: Option<&Spanned<RawRouteAccessLog>>,
    field: &str,
) -> LogRule {
    let Some(raw) = raw else {
        return LogRule::All;
    };
    match &raw.value {
        RawRouteAccessLog::Switch(true) => LogRule::All,
        RawRouteAccessLog::Switch(false) => LogRule::Off,
        RawRouteAccessLog::Word(w) => match w.as_str() {
            "on" => LogRule::All,
            "off" => LogRule::Off,
            "errors" => LogRule::Errors,
            other => {
                e.at(
                    raw,
                    field,
                    format!("{other:?}: expected on, off, errors or {{ sample: 1% }}"),
                );
                LogRule::All
            }
        },
        RawRouteAccessLog::Sample(s) => {
            match percent_ppm(e, raw, &s.sample, &format!("{field}.sample"), 100) {
                Some(ppm) => LogRule::Sample { ppm },
                None => LogRule::All,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn rule(text: &str) -> Result<LogRule, String> {
        let policy = format!(
            "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    access_log: {text}\n"
        );
        crate::config::parse_policy(&policy, Path::new("a.yaml"))
            .map(|p| p.routes[0].access_log)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_compiles_to_its_rule() {
        assert_eq!(rule("on"), Ok(LogRule::All));
        assert_eq!(rule("off"), Ok(LogRule::Off));
        assert_eq!(rule("true"), Ok(LogRule::All));
        assert_eq!(rule("false"), Ok(LogRule::Off));
        assert_eq!(rule("errors"), Ok(LogRule::Errors));
        assert_eq!(rule("{ sample: 1% }"), Ok(LogRule::Sample { ppm: 10_000 }));
        assert_eq!(
            rule("{ sample: 12.5% }"),
            Ok(LogRule::Sample { ppm: 125_000 })
        );
    }

    #[test]
    fn a_bad_rule_is_named_with_its_position() {
        assert_eq!(
            rule("sometimes"),
            Err("a.yaml:9:17: routes[0].access_log: \"sometimes\": expected on, off, errors or { sample: 1% }".into())
        );
        let err = rule("{ sample: 150% }").unwrap_err();
        assert!(
            err.starts_with("a.yaml:9:17: routes[0].access_log.sample: "),
            "{err}"
        );
    }

    #[test]
    fn errors_log_failures_only_and_a_sample_its_share() {
        assert!(LogRule::Errors.wants(404, || 0));
        assert!(!LogRule::Errors.wants(200, || 0));
        let s = LogRule::Sample { ppm: 10_000 };
        assert!(s.wants(200, || 9_999));
        assert!(!s.wants(200, || 10_000));
        assert!(!LogRule::Off.wants(500, || 0));
    }
}
