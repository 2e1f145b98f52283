//! Errors that name the file, the line, the column and the field.

use std::fmt;
use std::path::PathBuf;

/// One problem in one file (a policy, a scenario, or a file it names), printed as
/// `file:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (a file that cannot be read).
    pub line: u64,
    pub column: u64,
    /// The field's path, e.g. `routes[1].pool`; empty when the error is about the text as a
    /// whole (YAML syntax, a file that cannot be read).
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found, one per line when displayed; a configuration with any is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// `Ok(value)` when no error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`; bytes that are
/// not UTF-8 count one column each.
pub fn position(text: &[u8], offset: usize) -> (u64, u64) {
    let before = &text[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let prefix = &before[line_start..];
    let column = std::str::from_utf8(prefix).map_or(prefix.len(), |s| s.chars().count()) + 1;
    (line as u64, column as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn an_error_prints_file_line_column_field_and_message_and_all_are_kept() {
        let e = |line, field: &str| ConfigError {
            file: PathBuf::from("p.yaml"),
            line,
            column: 3,
            field: field.into(),
            message: "bad".into(),
        };
        let mut all = ConfigErrors::default();
        assert!(all.clone().into_result(1).is_ok());
        all.push(e(2, "routes[0].pool"));
        all.push(e(0, ""));
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.to_string(),
            "p.yaml:2:3: routes[0].pool: bad\np.yaml:0:3: bad"
        );
        assert!(all.into_result(1).is_err());
    }

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "ab\ncé: x\n".as_bytes();
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 3), (2, 1));
        assert_eq!(position(text, text.len() - 2), (2, 5), "é is one column");
        assert_eq!(position(text, 999), (3, 1), "past the end: the end");
    }
}
