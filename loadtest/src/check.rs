//! Checks on each answer, as k6's `check`: a request of the scenario may list what its
//! answers must hold (a status; a JSON path that exists, or does not, or equals a value),
//! and the report counts, per request and check, how many answers held it. A check never
//! stops the run nor counts as an error: it says what the answers were.
//!
//! ```yaml
//! requests:
//!   - path: "/query?db=telemetry&q=SELECT+..."
//!     check:
//!       - { status: 200 }
//!       - { json: results.0.series, exists: true }
//!       - { name: "no error", json: results.0.error, exists: false }
//!       - { json: results.0.series.0.name, equals: cpu }
//! ```
//!
//! A path is keys and array indexes joined by dots (`results.0.series`); a request with no
//! answer (refused, timed out) fails every check it has.

use serde_json::Value;

/// One check of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// As the report shows it: the one given, or one made from the rule.
    pub name: String,
    pub rule: Rule,
}

/// What an answer must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Status(u16),
    /// The body parses as JSON and the value at `path` exists (or, with `false`, does not).
    Exists {
        path: JsonPath,
        exists: bool,
    },
    /// The body parses as JSON and the value at `path` is `value`.
    Equals {
        path: JsonPath,
        value: Value,
    },
}

/// Keys and array indexes joined by dots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    segments: Vec<String>,
}

/// The most of an answer's body kept for the JSON checks; a longer one fails them.
pub const MAX_CHECKED_BODY: usize = 16 << 20;

impl JsonPath {
    /// `results.0.series`; no empty segment.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a JSON path: keys and array indexes joined by dots (results.0.series)"
            ));
        }
        Ok(JsonPath {
            text: text.to_string(),
            segments,
        })
    }

    /// The value at the path, if there is one: a segment is a key of an object, or an index
    /// into an array.
    pub fn find<'a>(&self, mut v: &'a Value) -> Option<&'a Value> {
        for s in &self.segments {
            v = match v {
                Value::Object(map) => map.get(s)?,
                Value::Array(items) => items.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Rule {
    /// The name a check without one is shown with.
    pub fn describe(&self) -> String {
        match self {
            Rule::Status(s) => format!("status is {s}"),
            Rule::Exists { path, exists: true } => format!("{} exists", path.as_str()),
            Rule::Exists {
                path,
                exists: false,
            } => format!("{} is absent", path.as_str()),
            Rule::Equals { path, value } => format!("{} == {value}", path.as_str()),
        }
    }
}

impl Check {
    /// Whether the rule reads the answer's body.
    pub fn needs_body(&self) -> bool {
        !matches!(self.rule, Rule::Status(_))
    }
}

/// What the checks of one request judge: its status and (when a check needs it) its body.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    pub status: u16,
    /// `None` when the body was not kept (no check needs it) or was over the bound.
    pub body: Option<&'a [u8]>,
}

/// Each check's verdict on an answer (`None`: no answer came), in the order of `checks`.
pub fn judge(checks: &[Check], answer: Option<Answered<'_>>) -> Vec<bool> {
    let Some(answer) = answer else {
        return vec![false; checks.len()];
    };
    // Parsed once for all the checks that read it.
    let json: Option<Value> = checks
        .iter()
        .any(Check::needs_body)
        .then(|| answer.body.and_then(|b| serde_json::from_slice(b).ok()))
        .flatten();
    checks
        .iter()
        .map(|c| match &c.rule {
            Rule::Status(s) => answer.status == *s,
            Rule::Exists { path, exists } => json
                .as_ref()
                .is_some_and(|j| path.find(j).is_some() == *exists),
            Rule::Equals { path, value } => json
                .as_ref()
                .and_then(|j| path.find(j))
                .is_some_and(|v| v == value),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rule: Rule) -> Check {
        Check {
            name: rule.describe(),
            rule,
        }
    }

    fn path(text: &str) -> JsonPath {
        JsonPath::parse(text).unwrap()
    }

    const ANSWER: &[u8] =
        br#"{"results":[{"statement_id":0,"series":[{"name":"cpu","values":[[1,2.5]]}]}]}"#;

    #[test]
    fn paths_walk_keys_and_indexes() {
        let v: Value = serde_json::from_slice(ANSWER).unwrap();
        assert_eq!(
            path("results.0.series.0.name").find(&v),
            Some(&Value::from("cpu"))
        );
        assert_eq!(
            path("results.0.series.0.values.0.1").find(&v),
            Some(&Value::from(2.5))
        );
        assert_eq!(path("results.1").find(&v), None);
        assert_eq!(path("results.x").find(&v), None, "an array takes indexes");
        assert_eq!(path("results.0.statement_id.more").find(&v), None);
        for bad in ["", "a..b", ".a", "a."] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_rule_judges_the_answer_and_no_answer_fails_them_all() {
        let checks = [
            check(Rule::Status(200)),
            check(Rule::Exists {
                path: path("results.0.series"),
                exists: true,
            }),
            check(Rule::Exists {
                path: path("results.0.error"),
                exists: false,
            }),
            check(Rule::Equals {
                path: path("results.0.series.0.name"),
                value: Value::from("cpu"),
            }),
            check(Rule::Equals {
                path: path("results.0.statement_id"),
                value: Value::from(1),
            }),
        ];
        let ok = Answered {
            status: 200,
            body: Some(ANSWER),
        };
        assert_eq!(judge(&checks, Some(ok)), [true, true, true, true, false]);
        let error = Answered {
            status: 400,
            body: Some(br#"{"error":"bad"}"#),
        };
        assert_eq!(
            judge(&checks, Some(error)),
            [false, false, true, false, false],
            "an absent path is absent"
        );
        let not_json = Answered {
            status: 200,
            body: Some(b"<html>"),
        };
        assert_eq!(
            judge(&checks, Some(not_json)),
            [true, false, false, false, false],
            "a body that is not JSON holds no JSON check, absence included"
        );
        assert_eq!(judge(&checks, None), [false; 5]);
    }

    #[test]
    fn names_say_what_is_checked() {
        assert_eq!(Rule::Status(204).describe(), "status is 204");
        assert_eq!(
            Rule::Equals {
                path: path("a.0"),
                value: Value::from("x")
            }
            .describe(),
            "a.0 == \"x\""
        );
    }
}
