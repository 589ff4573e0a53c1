//! Typed reading of one property set: each accessor names the key, the value and the expected
//! form in its error, so that a bad value stops start-up with one actionable line.

use std::path::{Path, PathBuf};

use super::{ConfigError, Properties, Secret};

pub(super) struct Reader<'a> {
    pub(super) p: &'a Properties,
    pub(super) dir: &'a Path,
}

impl Reader<'_> {
    pub(super) fn invalid(&self, key: &str, expected: &str) -> ConfigError {
        let (file, value) = match self.p.get(key) {
            Some(v) => (v.file.display().to_string(), v.value.clone()),
            None => (self.dir.display().to_string(), String::new()),
        };
        ConfigError::Invalid {
            file,
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        }
    }
    pub(super) fn string(&self, key: &str) -> Option<String> {
        self.p.get(key).map(|v| v.value.trim().to_string())
    }
    pub(super) fn secret(&self, key: &str) -> Option<Secret> {
        self.string(key).map(Secret::from)
    }
    pub(super) fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| self.invalid(key, expected)),
        }
    }
    pub(super) fn positive(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.parse::<u64>(key, "a positive integer")? {
            Some(0) => Err(self.invalid(key, "a positive integer")),
            v => Ok(v),
        }
    }
    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.string(key).as_deref() {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(_) => Err(self.invalid(key, "true or false")),
        }
    }
    pub(super) fn path(&self, key: &str) -> Option<PathBuf> {
        self.string(key).map(|v| {
            let p = PathBuf::from(v);
            if p.is_absolute() {
                p
            } else {
                self.dir.join(p)
            }
        })
    }
    pub(super) fn existing_file(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        match self.path(key) {
            Some(p) if !p.is_file() => {
                Err(self.invalid(key, "the path of an existing readable file"))
            }
            other => Ok(other),
        }
    }
    pub(super) fn url(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) if (v.starts_with("https://") || v.starts_with("http://")) && v.len() > 8 => {
                Ok(Some(v.trim_end_matches('/').to_string()))
            }
            Some(_) => Err(self.invalid(key, "an http:// or https:// URL")),
        }
    }
}
