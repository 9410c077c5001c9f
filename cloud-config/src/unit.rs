//! systemd unit files, parsed as systemd reads them (systemd.syntax(7)):
//! `[Section]` headers, `Key=Value` lines with the whitespace around key
//! and value removed, `#` and `;` comment lines, a `\` at the end of a line
//! joining it to the next (comment lines inside such a run are skipped),
//! and keys that repeat (every assignment is kept, in order; what a repeat
//! or an empty value means is up to the directive, see `translate`).
//!
//! Drop-ins are merged by appending their assignments after the unit's,
//! section by section, as systemd does; each assignment remembers which
//! text it came from so a diagnostic can point there.

use crate::error::Error;

/// One assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The key (`ExecStart`).
    pub key: String,
    /// The value, continuation lines joined; may be empty (a reset).
    pub value: String,
    /// The line the assignment starts on, from 1, in its own text.
    pub line: usize,
    /// Which text it came from: the caller's number (0 for the unit, 1.. for drop-ins).
    pub origin: usize,
}

/// A section and its assignments in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The name between the brackets (`Service`).
    pub name: String,
    /// The header's line.
    pub line: usize,
    /// The header's text.
    pub origin: usize,
    /// The assignments.
    pub entries: Vec<Entry>,
}

/// A parsed unit (with its drop-ins, once merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitFile {
    /// Sections in the order they first appeared.
    pub sections: Vec<Section>,
}

impl UnitFile {
    /// Parses a unit's text; `origin` is stored in every entry.
    pub fn parse(text: &str, origin: usize) -> Result<UnitFile, Error> {
        let mut unit = UnitFile::default();
        let mut current: Option<usize> = None;
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        while let Some((line_no, raw)) = lines.next() {
            let mut line = raw.trim().to_string();
            if line.is_empty() || is_comment(&line) {
                continue;
            }
            // A trailing backslash joins the next line, with a space;
            // comment lines inside the run are skipped.
            while line.ends_with('\\') {
                line.pop();
                line.push(' ');
                let next = lines
                    .by_ref()
                    .map(|(_, l)| l.trim())
                    .find(|l| !is_comment(l));
                let Some(next) = next else {
                    break;
                };
                line.push_str(next);
            }
            let line = line.trim_end();
            if let Some(header) = line.strip_prefix('[') {
                let name = header.strip_suffix(']').ok_or_else(|| Error::Unit {
                    line: line_no,
                    message: format!("section header {line:?} has no closing `]`"),
                })?;
                if name.is_empty() || name.contains(['[', ']']) {
                    return Err(Error::Unit {
                        line: line_no,
                        message: format!("bad section header {line:?}"),
                    });
                }
                // A header that repeats continues the section of that name.
                current = Some(match unit.sections.iter().position(|s| s.name == name) {
                    Some(i) => i,
                    None => {
                        unit.sections.push(Section {
                            name: name.to_string(),
                            line: line_no,
                            origin,
                            entries: Vec::new(),
                        });
                        unit.sections.len() - 1
                    }
                });
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| Error::Unit {
                line: line_no,
                message: format!("{line:?} is neither `[Section]` nor `Key=Value`"),
            })?;
            let key = key.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(Error::Unit {
                    line: line_no,
                    message: format!("bad key {key:?}"),
                });
            }
            let section = current
                .and_then(|i| unit.sections.get_mut(i))
                .ok_or_else(|| Error::Unit {
                    line: line_no,
                    message: format!("`{key}=` comes before any `[Section]` header"),
                })?;
            section.entries.push(Entry {
                key: key.to_string(),
                value: value.trim().to_string(),
                line: line_no,
                origin,
            });
        }
        Ok(unit)
    }

    /// Appends a drop-in's assignments, section by section.
    pub fn merge(&mut self, drop_in: UnitFile) {
        for section in drop_in.sections {
            match self.sections.iter_mut().find(|s| s.name == section.name) {
                Some(mine) => mine.entries.extend(section.entries),
                None => self.sections.push(section),
            }
        }
    }

    /// A section by name.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Every assignment of `key` in `section`, in order.
    pub fn all<'a>(&'a self, section: &str, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.section(section)
            .into_iter()
            .flat_map(|s| s.entries.iter())
            .filter(move |e| e.key == key)
    }

    /// The last assignment of `key` in `section` (for single-valued keys).
    pub fn last<'a>(&'a self, section: &str, key: &'a str) -> Option<&'a Entry> {
        self.all(section, key).last()
    }
}

fn is_comment(line: &str) -> bool {
    line.starts_with('#') || line.starts_with(';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments() {
        let text = "# top comment\n[Unit]\nDescription = Say hello \n; another\nAfter=a.service\nAfter=b.service\n\n[Service]\nExecStart=/bin/echo hi\n";
        let u = UnitFile::parse(text, 0).expect("parses");
        assert_eq!(u.sections.len(), 2);
        assert_eq!(
            u.last("Unit", "Description").map(|e| e.value.as_str()),
            Some("Say hello")
        );
        let after: Vec<_> = u.all("Unit", "After").map(|e| e.value.as_str()).collect();
        assert_eq!(after, ["a.service", "b.service"]);
        let exec = u.last("Service", "ExecStart").expect("set");
        assert_eq!((exec.line, exec.value.as_str()), (9, "/bin/echo hi"));
    }

    #[test]
    fn continuation_lines() {
        let text = "[Service]\nExecStart=/usr/bin/docker run \\\n  --name x \\\n# a comment inside\n  busybox\nUser=core\n";
        let u = UnitFile::parse(text, 0).expect("parses");
        let exec = u.last("Service", "ExecStart").expect("set");
        assert_eq!(exec.value, "/usr/bin/docker run  --name x  busybox");
        assert_eq!(exec.line, 2);
        assert_eq!(u.last("Service", "User").map(|e| e.line), Some(6));
    }

    #[test]
    fn empty_values_kept() {
        let u = UnitFile::parse("[Service]\nEnvironment=A=1\nEnvironment=\n", 0).expect("parses");
        let v: Vec<_> = u
            .all("Service", "Environment")
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(v, ["A=1", ""]);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            UnitFile::parse("ExecStart=/bin/true\n", 0),
            Err(Error::Unit {
                line: 1,
                message: "`ExecStart=` comes before any `[Section]` header".into()
            })
        );
        assert!(matches!(
            UnitFile::parse("[Service]\njust words\n", 0),
            Err(Error::Unit { line: 2, .. })
        ));
        assert!(matches!(
            UnitFile::parse("[Service\n", 0),
            Err(Error::Unit { line: 1, .. })
        ));
    }

    #[test]
    fn repeated_headers_and_drop_ins_merge() {
        let mut u = UnitFile::parse(
            "[Unit]\nDescription=a\n[Service]\nExecStart=/a\n[Unit]\nAfter=x.service\n",
            0,
        )
        .expect("parses");
        assert_eq!(u.sections.len(), 2);
        assert_eq!(u.sections[0].name, "Unit");
        assert_eq!(u.all("Unit", "After").count(), 1);
        let d = UnitFile::parse(
            "[Service]\nEnvironment=A=1\n[Install]\nWantedBy=multi-user.target\n",
            1,
        )
        .expect("parses");
        u.merge(d);
        let env = u.last("Service", "Environment").expect("merged");
        assert_eq!((env.origin, env.line), (1, 2));
        assert!(u.section("Install").is_some());
    }
}
