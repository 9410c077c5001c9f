//! Diagnostics and their two renderings (text and JSON), shared by
//! `tandem config validate` and `tandemctl config validate` so the build
//! host and the node say the same thing in the same words.

use serde::Serialize;

use crate::yaml::Pos;

/// How bad a diagnostic is: an error makes the config invalid; a warning
/// names something Tandem reads but does not do (and what to do instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is refused.
    Error,
    /// The config is accepted; this part of it has no effect or another one.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding, at a position of the file and a key path such as
/// `coreos.units[0].content` (keys spelt as in the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// The key path; empty for the file as a whole.
    pub path: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl Diagnostic {
    /// An error at `pos`.
    pub fn error(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, pos, path, message)
    }

    /// A warning at `pos`.
    pub fn warning(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, pos, path, message)
    }

    fn new(
        severity: Severity,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            line: pos.line,
            column: pos.column,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// All diagnostics of one file, in the file's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Sorted by position (stable: findings at one position keep their order).
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// A report of these diagnostics, put in the file's order.
    pub fn new(mut diagnostics: Vec<Diagnostic>) -> Report {
        diagnostics.sort_by_key(|d| (d.line, d.column));
        Report { diagnostics }
    }

    /// Whether the config is accepted (no errors; warnings allowed).
    pub fn valid(&self) -> bool {
        self.errors() == 0
    }

    /// How many errors.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// How many warnings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == s).count()
    }

    /// The text form: `file:line:col: error: path: message` per finding,
    /// then a summary line.
    pub fn render_text(&self, file: &str) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            let path = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            out.push_str(&format!(
                "{file}:{}:{}: {}: {path}{}\n",
                d.line,
                d.column,
                d.severity.as_str(),
                d.message
            ));
        }
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "{file}: {}: {}, {}\n",
            if self.valid() { "valid" } else { "invalid" },
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning"),
        ));
        out
    }

    /// The JSON form: `{"valid", "errors", "warnings", "diagnostics": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "valid": self.valid(),
            "errors": self.errors(),
            "warnings": self.warnings(),
            "diagnostics": self.diagnostics,
        })
    }

    /// What the validate commands print: the text form, or the JSON form
    /// (pretty, with a final newline).
    pub fn render(&self, file: &str, json: bool) -> String {
        if json {
            let mut out = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
            out.push('\n');
            out
        } else {
            self.render_text(file)
        }
    }

    /// The exit code of the validate commands: 0 valid, 1 invalid.
    pub fn exit_code(&self) -> u8 {
        if self.valid() { 0 } else { 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_rendered() {
        let r = Report::new(vec![
            Diagnostic::warning(
                Pos::new(5, 3),
                "coreos.fleet",
                "fleet is not part of Tandem",
            ),
            Diagnostic::error(Pos::new(1, 1), "", "no #cloud-config"),
        ]);
        assert_eq!(r.diagnostics[0].line, 1);
        assert!(!r.valid());
        assert_eq!(r.exit_code(), 1);
        assert_eq!(
            r.render_text("a.yml"),
            "a.yml:1:1: error: no #cloud-config\n\
             a.yml:5:3: warning: coreos.fleet: fleet is not part of Tandem\n\
             a.yml: invalid: 1 error, 1 warning\n"
        );
        let j = r.to_json();
        assert_eq!(j["valid"], false);
        assert_eq!(j["errors"], 1);
        assert_eq!(j["diagnostics"][1]["severity"], "warning");
        assert_eq!(j["diagnostics"][1]["path"], "coreos.fleet");
    }

    #[test]
    fn valid_with_warnings() {
        let r = Report::new(vec![Diagnostic::warning(Pos::new(2, 1), "x", "y")]);
        assert!(r.valid());
        assert_eq!(r.exit_code(), 0);
        assert!(
            r.render_text("f")
                .ends_with("f: valid: 0 errors, 1 warning\n")
        );
    }
}
