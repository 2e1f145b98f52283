//! Scenarios: the YAML an operator writes, checked and compiled into a [`Scenario`] that the
//! engine runs without further checks.
//!
//! ```text
//! text --vars.rs--> text with ${NAME} replaced (kept as Scenario::yaml, for the report)
//!      --raw.rs---> RawScenario (YAML shapes, unknown keys refused)
//!      --compile--> Scenario (parsed durations, methods, header names, templates, SLOs)
//! ```
//!
//! Every error names `file:line:column: field: message`, and compiling collects all of
//! them, so one run of `loadtest validate` shows every mistake. A syntax error, an unknown
//! key or a bad variable stops before compiling, since the shape is not known yet.
//!
//! Defaults: `method: GET`, `weight: 1`, `clients: 1`, `max_connections: 256`,
//! `timeout: 10s`, `seed: 1`, closed-loop `warmup: 0s`. With two or more stages the first
//! is a warm-up unless it says `warmup: false`; a warm-up stage (or the closed loop's
//! `warmup`, the first part of its `duration`) is excluded from the overall figures and
//! the SLO verdicts.
//!
//! Randomness stays out of these types: the engine draws numbers from its seeded RNG and
//! passes them to [`Mix::pick`] and [`Scenario::client_for`].

mod compile;
pub mod duration;
pub mod error;
pub mod raw;
pub mod template;
pub mod vars;

pub use error::{ScenarioError, ScenarioErrors};
pub use template::Template;
pub use vars::parse_set;

use crate::slo::Slo;
use http::{HeaderName, Method};
use raw::RawScenario;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A checked scenario, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub target: Target,
    pub load: Load,
    /// At least one.
    pub requests: Vec<RequestTemplate>,
    /// The weighted choice among `requests`, built with them (see [`Scenario::mix`]).
    mix: Mix,
    /// Sent with every request, in the order written; a request's own header of the same
    /// name replaces one of these (see [`Scenario::headers_for`]). A `host` header here
    /// replaces the target's authority.
    pub headers: Vec<(HeaderName, Template)>,
    /// Client identities, numbered `0..clients`.
    pub clients: NonZeroU32,
    /// Line `i` of `client_tokens_file` is client `i`'s token; clients past the end wrap
    /// around. Empty without a token file (and then no template uses `${token}`).
    pub tokens: Vec<String>,
    pub max_connections: NonZeroUsize,
    /// Per request.
    pub timeout: Duration,
    /// For the engine's RNG (the mix and the client choice).
    pub seed: u64,
    /// In the order of `at` (events at the same time in the order written).
    pub events: Vec<Event>,
    pub slo: Vec<Slo>,
    /// The scenario's text after variable substitution, for the report.
    pub yaml: String,
    /// The file it came from; relative paths in it were taken from its folder.
    pub origin: PathBuf,
    /// TLS settings; present exactly when the target is `https://`.
    pub tls: Option<ClientTls>,
}

/// Where requests go: plain HTTP to one host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A name or an IP address (IPv6 without brackets), to connect to.
    pub host: String,
    /// 80 when the URL gives none.
    pub port: u16,
    /// `""` or `/prefix` (no trailing slash), to put in front of every request's `path`.
    pub base_path: String,
    /// `host[:port]` as written in the URL, for the `Host` header.
    pub authority: String,
    /// `https://`: the connection is TLS (see [`Scenario::tls`]); the default port is 443.
    pub https: bool,
}

/// `http(s)://authority/base_path`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority, self.base_path)
    }
}

/// How to reach an `https://` target: the CAs to trust, and a client certificate (mTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Certificate and key, PEM.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// Requests are due at a rate, whether or not earlier ones were answered.
    Open(Vec<Stage>),
    /// `concurrency` workers each send their next request when the previous one was
    /// answered, for `duration`, of which the first `warmup` is not measured.
    Closed {
        concurrency: NonZeroUsize,
        duration: Duration,
        /// Shorter than `duration`.
        warmup: Duration,
    },
}

impl Load {
    /// How long the whole run lasts, warm-up included.
    pub fn total_duration(&self) -> Duration {
        match self {
            Load::Open(stages) => stages.iter().map(|s| s.duration).sum(),
            Load::Closed { duration, .. } => *duration,
        }
    }

    pub fn mode(&self) -> crate::report::Mode {
        match self {
            Load::Open(_) => crate::report::Mode::Open,
            Load::Closed { .. } => crate::report::Mode::Closed,
        }
    }
}

/// One stage of an open-loop run: the rate goes linearly from `start_rate` to `end_rate`
/// (equal for a constant rate) over `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// More than 0.
    pub duration: Duration,
    /// Requests per second, finite and >= 0; not both 0.
    pub start_rate: f64,
    pub end_rate: f64,
    /// Excluded from the overall figures and the SLO verdicts.
    pub warmup: bool,
    /// How the report names it: `5s at 200/s`, `10s ramp 2000→8000/s`.
    pub label: String,
}

/// One kind of request of the mix.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestTemplate {
    pub weight: NonZeroU32,
    pub method: Method,
    /// Path and query as written, starting with `/`; the target's `base_path` goes in
    /// front of it (the compiled scenario checked that the two make a valid path).
    pub path: Template,
    /// The request's own headers, after the scenario's (see [`Scenario::headers_for`]).
    pub headers: Vec<(HeaderName, Template)>,
    /// Empty when the request has none.
    pub body: Template,
    /// Always sent as this client (`< clients`), e.g. a noisy neighbour.
    pub client: Option<u32>,
    /// What each answer must hold; counted in the report, never an error.
    pub checks: Vec<crate::check::Check>,
}

/// A command run by `sh -c` at an offset from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Before the end of the run.
    pub at: Duration,
    pub run: String,
}

/// A weighted choice among the requests, from a random draw the caller makes.
///
/// The draw `r` is reduced modulo the total weight `W`; `r % W` then falls in the block of
/// request `i` when `w0 + … + w(i-1) <= r % W < w0 + … + wi`, the blocks laid out in the
/// order of the requests. So over every `r` in `0..W` each index comes up exactly its
/// weight times; from a uniform `u64` draw the bias of the modulo is below `W / 2^64`.
///
/// ```
/// use loadtest::scenario::Mix;
/// use std::num::NonZeroU32;
///
/// let w = |n| NonZeroU32::new(n).unwrap();
/// let mix = Mix::new([w(2), w(1)]).unwrap();
/// let picks: Vec<usize> = (0..6).map(|r| mix.pick(r)).collect();
/// assert_eq!(picks, [0, 0, 1, 0, 0, 1]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// The cumulative weights: `ends[i]` is the end (exclusive) of index `i`'s block.
    ends: Vec<u64>,
}

impl Mix {
    /// `None` when there is no weight at all (or their sum overflows, which would take more
    /// than four billion requests).
    pub fn new(weights: impl IntoIterator<Item = NonZeroU32>) -> Option<Mix> {
        let mut ends = Vec::new();
        let mut total: u64 = 0;
        for w in weights {
            total = total.checked_add(u64::from(w.get()))?;
            ends.push(total);
        }
        (!ends.is_empty()).then_some(Mix { ends })
    }

    /// The sum of the weights: draws `0..total()` cover every request exactly its weight
    /// times.
    pub fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The index of the request for draw `r`.
    pub fn pick(&self, r: u64) -> usize {
        let x = r % self.total().max(1);
        self.ends.partition_point(|&end| end <= x)
    }
}

impl Scenario {
    /// The weighted choice among [`Scenario::requests`].
    pub fn mix(&self) -> Mix {
        self.mix.clone()
    }

    /// The client that sends a request made from `requests[template]`: its pinned client,
    /// else `draw % clients`.
    pub fn client_for(&self, template: usize, draw: u64) -> u32 {
        match self.requests.get(template).and_then(|r| r.client) {
            Some(pinned) => pinned,
            // Less than `clients`, a u32, so the conversion never falls back.
            None => u32::try_from(draw % u64::from(self.clients.get())).unwrap_or(0),
        }
    }

    /// The token of `client` (`""` when the scenario has no token file).
    pub fn token_for(&self, client: u32) -> &str {
        match self.tokens.len() {
            0 => "",
            n => &self.tokens[client as usize % n],
        }
    }

    /// Every header of a request made from `requests[template]`: the scenario's, except
    /// those the request gives itself, then the request's own.
    pub fn headers_for(&self, template: usize) -> impl Iterator<Item = &(HeaderName, Template)> {
        let own: &[(HeaderName, Template)] = self
            .requests
            .get(template)
            .map_or(&[], |r| r.headers.as_slice());
        self.headers
            .iter()
            .filter(move |(name, _)| !own.iter().any(|(n, _)| n == name))
            .chain(own)
    }
}

/// Reads and compiles the scenario at `path`; variables come from `set`, then from the
/// process environment.
pub fn load(path: &Path, set: &[(String, String)]) -> Result<Scenario, ScenarioErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        operator_config::ConfigErrors(vec![ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_str(&text, path, set, &|name| std::env::var(name).ok())
}

/// Compiles scenario text; `origin` names it in errors and anchors `body_file` and
/// `client_tokens_file`. `env` stands for the process environment.
///
/// ```
/// use loadtest::scenario::{parse_str, Load};
/// use std::path::Path;
///
/// let text = "
/// name: smoke
/// target: http://127.0.0.1:8080
/// concurrency: 4
/// duration: ${DURATION:-10s}
/// requests:
///   - { path: /ping }
/// ";
/// let set = [("DURATION".to_string(), "30s".to_string())];
/// let s = parse_str(text, Path::new("smoke.yaml"), &set, &|_| None).unwrap();
/// assert_eq!(s.load.total_duration().as_secs(), 30);
/// assert!(matches!(s.load, Load::Closed { .. }));
/// ```
pub fn parse_str(
    text: &str,
    origin: &Path,
    set: &[(String, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Scenario, ScenarioErrors> {
    let yaml = vars::substitute(text, set, env).map_err(|errors| {
        operator_config::ConfigErrors(
            errors
                .into_iter()
                .map(|e| ScenarioError {
                    file: origin.to_path_buf(),
                    line: e.line,
                    column: e.column,
                    field: String::new(),
                    message: e.kind.to_string(),
                })
                .collect(),
        )
    })?;
    let raw: RawScenario = serde_saphyr::from_str(&yaml).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        operator_config::ConfigErrors(vec![ScenarioError {
            file: origin.to_path_buf(),
            line,
            column,
            field: String::new(),
            message: one_line(&e.without_snippet().to_string()),
        }])
    })?;
    compile::compile(&raw, yaml, origin)
}

/// The first line of a parser message, without its trailing location (we print our own).
fn one_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// Default of `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default of `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `seed`.
pub const DEFAULT_SEED: u64 = 1;

#[cfg(test)]
mod tests;
