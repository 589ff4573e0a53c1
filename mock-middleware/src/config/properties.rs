//! Java-style `.properties` parsing.
//!
//! OX reads every `*.properties` file below its configuration directory into one property set; the
//! mock does the same so that an operator can drop in the files they already have. Each value
//! remembers the file it came from, so that a bad value can be reported with its file and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One property value and the file that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropValue {
    pub value: String,
    pub file: PathBuf,
}

/// The merged property set of a configuration directory.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    map: BTreeMap<String, PropValue>,
}

impl Properties {
    /// Reads every `*.properties` file in `dir` (not recursive), in file-name order; a key set in a
    /// later file overrides the earlier value.
    pub fn load_dir(dir: &Path) -> std::io::Result<Properties> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "properties") && p.is_file())
            .collect();
        files.sort();
        let mut props = Properties::default();
        for file in files {
            let text = std::fs::read_to_string(&file)?;
            props.merge_text(&text, &file);
        }
        Ok(props)
    }

    /// Parses `text` as the content of `file` and merges it into the set.
    pub fn merge_text(&mut self, text: &str, file: &Path) {
        for (key, value) in parse(text) {
            self.map.insert(
                key,
                PropValue {
                    value,
                    file: file.to_path_buf(),
                },
            );
        }
    }

    /// The value of `key`, trimmed; `None` when unset or empty.
    pub fn get(&self, key: &str) -> Option<&PropValue> {
        self.map.get(key).filter(|v| !v.value.trim().is_empty())
    }

    /// Sets a value programmatically (used by tests and by `init-demo`).
    pub fn set(&mut self, key: &str, value: &str) {
        self.map.insert(
            key.to_string(),
            PropValue {
                value: value.to_string(),
                file: PathBuf::from("<built-in>"),
            },
        );
    }

    /// All keys that start with `prefix`.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.map
            .keys()
            .filter(move |k| k.starts_with(prefix))
            .map(|k| k.as_str())
    }
}

/// Parses the properties format: `key=value`, `key: value` or `key value`; `#` and `!` comments;
/// a trailing backslash continues a line; `\n`, `\t`, `\\`, `\uXXXX` escapes.
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        out.push(split_pair(&logical));
        logical.clear();
    }
    if !logical.is_empty() {
        out.push(split_pair(&logical));
    }
    out
}

fn split_pair(line: &str) -> (String, String) {
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            key_end = i;
            break;
        }
    }
    let key = unescape(&line[..key_end]);
    let mut rest = line[key_end..].trim_start();
    if rest.starts_with('=') || rest.starts_with(':') {
        rest = rest[1..].trim_start();
    }
    (key, unescape(rest))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_separators_comments_and_continuations() {
        let text =
            "# comment\n! other\na=1\nb : two words \nc three\nd=long\\\n   value\ne=\\u0041\\n\n";
        let got = parse(text);
        assert_eq!(
            got,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words ".into()),
                ("c".into(), "three".into()),
                ("d".into(), "longvalue".into()),
                ("e".into(), "A\n".into()),
            ]
        );
    }

    #[test]
    fn later_files_override_and_empty_is_unset() {
        let mut p = Properties::default();
        p.merge_text("k=1\nempty=\n", Path::new("a.properties"));
        p.merge_text("k=2\n", Path::new("b.properties"));
        assert_eq!(p.get("k").unwrap().value, "2");
        assert_eq!(p.get("k").unwrap().file, PathBuf::from("b.properties"));
        assert!(p.get("empty").is_none());
    }
}
