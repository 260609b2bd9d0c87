//! Reading options from the environment: `LATCHKEY_<SECTION_><OPTION>`, an
//! empty value the same as none, a value that does not parse named with the
//! variable it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::{ConfigError, ENV_PREFIX};

/// The variables of one section (`""` for the top level, `"PANEL_"` for
/// `[panel]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Env<'a> {
    vars: &'a BTreeMap<String, String>,
    section: &'static str,
}

impl<'a> Env<'a> {
    pub(super) fn new(vars: &'a BTreeMap<String, String>, section: &'static str) -> Self {
        Self { vars, section }
    }

    /// Whether any variable of this section has a value.
    pub(super) fn any(&self) -> bool {
        let prefix = format!("{ENV_PREFIX}{}", self.section);
        self.vars
            .iter()
            .any(|(key, value)| key.starts_with(&prefix) && !value.trim().is_empty())
    }

    /// The variable's name and trimmed value, when it has one.
    fn lookup(&self, option: &str) -> Option<(String, String)> {
        let key = format!(
            "{ENV_PREFIX}{}{}",
            self.section,
            option.to_ascii_uppercase()
        );
        let value = self.vars.get(&key)?.trim();
        (!value.is_empty()).then(|| (key, value.to_owned()))
    }

    pub(super) fn text(&self, option: &str) -> Option<String> {
        self.lookup(option).map(|(_, value)| value)
    }

    pub(super) fn parse<T: FromStr>(&self, option: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.lookup(option)
            .map(|(name, value)| {
                value.parse().map_err(|error: T::Err| ConfigError::Invalid {
                    name,
                    message: format!("cannot parse {value:?}: {error}"),
                })
            })
            .transpose()
    }

    /// A secret: the prefixed name first, then the plain one
    /// (`LATCHKEY_DATABASE_URL`, then `DATABASE_URL`).
    pub(super) fn secret(&self, option: &str) -> Option<String> {
        self.text(option).or_else(|| {
            self.vars
                .get(&option.to_ascii_uppercase())
                .map(|value| value.trim())
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        })
    }
}
