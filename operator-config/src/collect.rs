//! Collecting errors while a configuration is compiled: each one points at a value's
//! position (`serde_saphyr::Spanned`) in the file being compiled, and every one is kept, in
//! the order it was found. The gateway's policies and the load-test scenarios both compile
//! through a `Collector`; what only one of them checks stays with it.

use crate::duration::parse_duration;
use crate::error::{ConfigError, ConfigErrors};
use serde_saphyr::Spanned;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Collects the errors of one file into a list that may hold other files' errors too (a
/// policy spread over several files has one list).
#[derive(Debug)]
pub struct Collector<'a> {
    file: &'a Path,
    out: &'a mut ConfigErrors,
}

impl<'a> Collector<'a> {
    /// Errors found in `file`, added to `out`.
    pub fn new(file: &'a Path, out: &'a mut ConfigErrors) -> Self {
        Collector { file, out }
    }

    /// The file being compiled.
    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// An error at `v`'s position in the file being compiled.
    pub fn at<T>(&mut self, v: &Spanned<T>, field: impl Into<String>, message: impl Into<String>) {
        self.in_file(
            self.file.to_path_buf(),
            v.referenced.line(),
            v.referenced.column(),
            field,
            message,
        );
    }

    /// An error at a position given as it is, in any file (one the configuration names,
    /// say).
    pub fn in_file(
        &mut self,
        file: PathBuf,
        line: u64,
        column: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.out.push(ConfigError {
            file,
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    /// How many errors the list holds: compare before and after a part is compiled to know
    /// whether it had any.
    pub fn count(&self) -> usize {
        self.out.len()
    }

    /// A duration; zero refused unless `zero_ok`. `None` when it is wrong (reported).
    pub fn duration(
        &mut self,
        v: &Spanned<String>,
        field: &str,
        zero_ok: bool,
    ) -> Option<Duration> {
        match parse_duration(&v.value) {
            Ok(d) if zero_ok || !d.is_zero() => Some(d),
            Ok(_) => {
                self.at(v, field, "must be more than 0");
                None
            }
            Err(e) => {
                self.at(v, field, e);
                None
            }
        }
    }

    /// An optional duration above zero: `default` when it is absent or wrong (reported).
    pub fn duration_or(
        &mut self,
        v: Option<&Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        v.and_then(|s| self.duration(s, field, false))
            .unwrap_or(default)
    }

    /// A whole number in `1..=max`. `None` when it is not (reported).
    pub fn positive(&mut self, v: &Spanned<u64>, field: &str, max: u64) -> Option<u64> {
        if (1..=max).contains(&v.value) {
            Some(v.value)
        } else {
            self.at(v, field, format!("must be between 1 and {max}"));
            None
        }
    }

    /// An optional whole number from 1 to `u32::MAX`: `default` (1 if it is 0) when it is
    /// absent or out of range (reported).
    pub fn positive_or(
        &mut self,
        v: Option<&Spanned<u64>>,
        field: &str,
        default: u32,
    ) -> NonZeroU32 {
        v.and_then(|s| self.positive(s, field, u64::from(u32::MAX)))
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::new(default).unwrap_or(NonZeroU32::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn strings(yaml: &str) -> BTreeMap<String, Spanned<String>> {
        serde_saphyr::from_str(yaml).expect("test YAML")
    }

    fn numbers(yaml: &str) -> BTreeMap<String, Spanned<u64>> {
        serde_saphyr::from_str(yaml).expect("test YAML")
    }

    #[test]
    fn errors_point_at_values_and_keep_the_order_they_were_found_in() {
        let v = strings("a: x\nb:   y\n");
        let mut out = ConfigErrors::default();
        let mut e = Collector::new(Path::new("p.yaml"), &mut out);
        assert_eq!(e.file(), Path::new("p.yaml"));
        e.at(&v["b"], "b", "second line");
        e.in_file(PathBuf::from("tokens.txt"), 3, 1, "f", "elsewhere");
        e.at(&v["a"], "", "first line");
        assert_eq!(e.count(), 3);
        let mut other = Collector::new(Path::new("q.yaml"), &mut out);
        other.at(&v["a"], "a", "another file");
        assert_eq!(other.count(), 4, "one list for every file");
        assert_eq!(
            out.to_string(),
            "p.yaml:2:6: b: second line\ntokens.txt:3:1: f: elsewhere\np.yaml:1:4: first line\nq.yaml:1:4: a: another file"
        );
    }

    #[test]
    fn durations_refuse_zero_unless_told_and_fall_back_to_their_default() {
        let v = strings("zero: 0s\nbad: 5d\nok: 2s\n");
        let mut out = ConfigErrors::default();
        let mut e = Collector::new(Path::new("s.yaml"), &mut out);
        assert_eq!(
            e.duration(&v["ok"], "ok", false),
            Some(Duration::from_secs(2))
        );
        assert_eq!(e.duration(&v["zero"], "zero", true), Some(Duration::ZERO));
        assert_eq!(e.count(), 0);
        assert_eq!(e.duration(&v["zero"], "zero", false), None);
        assert_eq!(e.duration(&v["bad"], "bad", true), None);
        let d = Duration::from_secs(7);
        assert_eq!(e.duration_or(None, "none", d), d);
        assert_eq!(
            e.duration_or(Some(&v["ok"]), "ok", d),
            Duration::from_secs(2)
        );
        assert_eq!(e.duration_or(Some(&v["zero"]), "zero", d), d);
        assert_eq!(
            out.to_string(),
            "s.yaml:1:7: zero: must be more than 0\n\
             s.yaml:2:6: bad: duration \"5d\" has an unknown unit \"d\" (ms, s, m or h)\n\
             s.yaml:1:7: zero: must be more than 0"
        );
    }

    #[test]
    fn whole_numbers_are_checked_against_their_range() {
        let v = numbers("zero: 0\nbig: 4294967296\nten: 10\n");
        let mut out = ConfigErrors::default();
        let mut e = Collector::new(Path::new("s.yaml"), &mut out);
        assert_eq!(e.positive(&v["ten"], "ten", 10), Some(10));
        assert_eq!(e.positive(&v["ten"], "ten", 9), None);
        assert_eq!(e.positive_or(Some(&v["ten"]), "ten", 2).get(), 10);
        assert_eq!(e.positive_or(None, "none", 2).get(), 2);
        assert_eq!(e.positive_or(None, "none", 0).get(), 1);
        assert_eq!(e.positive_or(Some(&v["zero"]), "zero", 3).get(), 3);
        assert_eq!(e.positive_or(Some(&v["big"]), "big", 3).get(), 3);
        assert_eq!(
            out.to_string(),
            "s.yaml:3:6: ten: must be between 1 and 9\n\
             s.yaml:1:7: zero: must be between 1 and 4294967295\n\
             s.yaml:2:6: big: must be between 1 and 4294967295"
        );
    }
}
