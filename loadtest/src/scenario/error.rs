//! Scenario errors that name the file, the line, the column and the field.

use std::fmt;
use std::path::PathBuf;

/// One problem in a scenario (or a file it names), printed as
/// `file:line:column: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (a file that cannot be read).
    pub line: u64,
    pub column: u64,
    /// The field's path, e.g. `stages[1].rate`; empty when the error is about the text as a
    /// whole (YAML syntax, a variable).
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a scenario, one per line when displayed; a scenario with any is
/// not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl fmt::Display for ScenarioErrors {
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

impl ScenarioErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn push(&mut self, e: ScenarioError) {
        self.0.push(e);
    }

    /// `Ok(value)` when no error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, ScenarioErrors> {
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
