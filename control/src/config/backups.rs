//! The backups' options: the `[backups]` table of the TOML file, or
//! `LATCHKEY_BACKUPS_<OPTION>` variables, over the defaults below.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::ConfigError;
use super::env::Env;

/// The backups' validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// Where dumps are written (made when missing).
    pub dir: PathBuf,
    /// A scheduled backup each day at this time (UTC); none when unset.
    pub daily_at: Option<TimeOfDay>,
    /// Scheduled backups kept: the newest of each of this many days…
    pub keep_daily: u32,
    /// …and the newest of each of this many ISO weeks.
    pub keep_weekly: u32,
    /// PostgreSQL's tools, by path or name on `PATH`; their major version
    /// must not be older than the server's.
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(".data/backups"),
            daily_at: None,
            keep_daily: 7,
            keep_weekly: 4,
            pg_dump: PathBuf::from("pg_dump"),
            pg_restore: PathBuf::from("pg_restore"),
        }
    }
}

/// `HH:MM`, 24-hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub time::Time);

impl FromStr for TimeOfDay {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a time of day as HH:MM (24-hour, UTC)");
        let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
        let (hours, minutes): (u8, u8) = (
            hours.parse().map_err(|_| bad())?,
            minutes.parse().map_err(|_| bad())?,
        );
        if minutes >= 60 || text.len() != 5 {
            return Err(bad());
        }
        time::Time::from_hms(hours, minutes, 0)
            .map(Self)
            .map_err(|_| bad())
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0.hour(), self.0.minute())
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One layer's `[backups]` values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupLayer {
    dir: Option<PathBuf>,
    daily_at: Option<TimeOfDay>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    pg_dump: Option<PathBuf>,
    pg_restore: Option<PathBuf>,
}

impl BackupLayer {
    /// `LATCHKEY_BACKUPS_<OPTION>`; `None` when no such variable is set.
    pub fn from_env(vars: &BTreeMap<String, String>) -> Result<Option<Self>, ConfigError> {
        let env = Env::new(vars, "BACKUPS_");
        if !env.any() {
            return Ok(None);
        }
        Ok(Some(Self {
            dir: env.text("dir").map(PathBuf::from),
            daily_at: env.parse("daily_at")?,
            keep_daily: env.parse("keep_daily")?,
            keep_weekly: env.parse("keep_weekly")?,
            pg_dump: env.text("pg_dump").map(PathBuf::from),
            pg_restore: env.text("pg_restore").map(PathBuf::from),
        }))
    }

    /// `upper` where it has a value, `lower` elsewhere.
    pub fn stack(upper: Option<Self>, lower: Option<Self>) -> Option<Self> {
        let (upper, lower) = match (upper, lower) {
            (None, lower) => return lower,
            (upper, None) => return upper,
            (Some(upper), Some(lower)) => (upper, lower),
        };
        Some(Self {
            dir: upper.dir.or(lower.dir),
            daily_at: upper.daily_at.or(lower.daily_at),
            keep_daily: upper.keep_daily.or(lower.keep_daily),
            keep_weekly: upper.keep_weekly.or(lower.keep_weekly),
            pg_dump: upper.pg_dump.or(lower.pg_dump),
            pg_restore: upper.pg_restore.or(lower.pg_restore),
        })
    }

    pub fn resolve(self) -> BackupConfig {
        let d = BackupConfig::default();
        BackupConfig {
            dir: self.dir.unwrap_or(d.dir),
            daily_at: self.daily_at,
            keep_daily: self.keep_daily.unwrap_or(d.keep_daily),
            keep_weekly: self.keep_weekly.unwrap_or(d.keep_weekly),
            pg_dump: self.pg_dump.unwrap_or(d.pg_dump),
            pg_restore: self.pg_restore.unwrap_or(d.pg_restore),
        }
    }
}

impl BackupConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            ("backups.keep_daily", self.keep_daily),
            ("backups.keep_weekly", self.keep_weekly),
        ] {
            if value > 1_000 {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    message: "must be between 0 and 1000".into(),
                });
            }
        }
        if self.daily_at.is_some() && self.keep_daily == 0 && self.keep_weekly == 0 {
            return Err(ConfigError::Invalid {
                name: "backups.keep_daily".into(),
                message: "a schedule that keeps nothing deletes every backup it makes: keep at least one daily or weekly".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!("03:00".parse::<TimeOfDay>().unwrap().to_string(), "03:00");
        assert_eq!("23:59".parse::<TimeOfDay>().unwrap().0.minute(), 59);
        for bad in ["3:00", "24:00", "03:60", "03-00", "", "03:00:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn env_overrides_defaults() {
        let env: BTreeMap<String, String> = [
            ("LATCHKEY_BACKUPS_DAILY_AT", "04:30"),
            ("LATCHKEY_BACKUPS_KEEP_WEEKLY", "8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = BackupLayer::from_env(&env).unwrap().unwrap().resolve();
        assert_eq!(config.daily_at.unwrap().to_string(), "04:30");
        assert_eq!((config.keep_daily, config.keep_weekly), (7, 8));
        assert!(BackupLayer::from_env(&BTreeMap::new()).unwrap().is_none());
    }
}
