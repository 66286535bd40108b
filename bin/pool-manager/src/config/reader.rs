//! The shared parsing helpers: a snapshot of the environment ([`Env`]) and the [`Reader`] every
//! subject module reads its variables through, which collects problems instead of stopping at
//! the first, each naming its variable.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// A snapshot of the environment, so parsing is a pure function (and testable).
pub struct Env(BTreeMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// From pairs (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A variable's value, trimmed; `None` when it is unset or blank.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// Reads variables and collects the problems found on the way.
pub(super) struct Reader<'a> {
    pub(super) env: &'a Env,
    pub(super) problems: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A reader with no problems yet.
    pub(super) fn new(env: &'a Env) -> Self {
        Self {
            env,
            problems: Vec::new(),
        }
    }

    pub(super) fn optional(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string)
    }

    pub(super) fn required(&mut self, name: &str, what: &str) -> String {
        match self.env.get(name) {
            Some(v) => v.to_string(),
            None => {
                self.problems.push(format!("{name} is required: {what}"));
                String::new()
            }
        }
    }

    pub(super) fn secret(&self, name: &str) -> Option<SecretString> {
        self.env.get(name).map(|v| SecretString::from(v.to_string()))
    }

    pub(super) fn parse<T: FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.env.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.problems.push(format!("{name} must be {what}, got {v:?}"));
                default
            }),
        }
    }

    pub(super) fn parse_optional<T: FromStr>(&mut self, name: &str, what: &str) -> Option<T> {
        let v = self.env.get(name)?;
        match v.parse() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.problems.push(format!("{name} must be {what}, got {v:?}"));
                None
            }
        }
    }

    /// A duration in milliseconds, more than zero.
    pub(super) fn millis(&mut self, name: &str, default_ms: u64) -> Duration {
        let ms: u64 = self.parse(name, default_ms, "a whole number of milliseconds");
        if ms == 0 {
            self.problems.push(format!("{name} must be more than 0"));
        }
        Duration::from_millis(ms)
    }

    pub(super) fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.env.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => default,
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                self.problems
                    .push(format!("{name} must be true or false, got {other:?}"));
                default
            }
        }
    }

    /// An http(s) URL without a trailing slash.
    pub(super) fn url(&mut self, name: &str, default: &str) -> String {
        let url = self
            .env
            .get(name)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_string();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            self.problems
                .push(format!("{name} must be an http(s) URL, got {url:?}"));
        }
        url
    }
}
