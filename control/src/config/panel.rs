//! The panel's options: the `[panel]` table of the TOML file, or
//! `LATCHKEY_PANEL_<OPTION>` variables, over the defaults below.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;
use super::env::Env;

/// The panel's validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelConfig {
    /// A session unused this long ends.
    pub idle_timeout_secs: u64,
    /// A session ends this long after login, used or not.
    pub absolute_timeout_secs: u64,
    /// Mark cookies `Secure`: set it whenever the panel is reached over TLS.
    pub secure_cookies: bool,
    /// Failed logins from one IP within the window before the IP is blocked
    /// (an account is throttled after four times as many, from any IPs).
    pub login_max_failures: u64,
    pub login_failure_window_secs: u64,
    /// How long an automatic block lasts.
    pub login_block_secs: u64,
    /// Login attempts one IP may make per minute, failed or not.
    pub login_attempts_per_minute: u64,
    /// How often the dashboard's live numbers are pushed.
    pub dashboard_refresh_secs: u64,
    /// Grafana's address, for the monitoring page's links.
    pub grafana_url: Option<String>,
    /// Alertmanager's address (`http://…`): the monitoring page lists the
    /// alerts firing there instead of computing its own.
    pub alertmanager_url: Option<String>,
}

impl Default for PanelConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 1_800,
            absolute_timeout_secs: 43_200,
            secure_cookies: false,
            login_max_failures: 5,
            login_failure_window_secs: 900,
            login_block_secs: 3_600,
            login_attempts_per_minute: 20,
            dashboard_refresh_secs: 2,
            grafana_url: None,
            alertmanager_url: None,
        }
    }
}

/// One layer's `[panel]` values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelLayer {
    idle_timeout_secs: Option<u64>,
    absolute_timeout_secs: Option<u64>,
    secure_cookies: Option<bool>,
    login_max_failures: Option<u64>,
    login_failure_window_secs: Option<u64>,
    login_block_secs: Option<u64>,
    login_attempts_per_minute: Option<u64>,
    dashboard_refresh_secs: Option<u64>,
    grafana_url: Option<String>,
    alertmanager_url: Option<String>,
}

impl PanelLayer {
    /// `LATCHKEY_PANEL_<OPTION>`; `None` when no such variable is set.
    pub fn from_env(vars: &BTreeMap<String, String>) -> Result<Option<Self>, ConfigError> {
        let env = Env::new(vars, "PANEL_");
        if !env.any() {
            return Ok(None);
        }
        Ok(Some(Self {
            idle_timeout_secs: env.parse("idle_timeout_secs")?,
            absolute_timeout_secs: env.parse("absolute_timeout_secs")?,
            secure_cookies: env.parse("secure_cookies")?,
            login_max_failures: env.parse("login_max_failures")?,
            login_failure_window_secs: env.parse("login_failure_window_secs")?,
            login_block_secs: env.parse("login_block_secs")?,
            login_attempts_per_minute: env.parse("login_attempts_per_minute")?,
            dashboard_refresh_secs: env.parse("dashboard_refresh_secs")?,
            grafana_url: env.text("grafana_url"),
            alertmanager_url: env.text("alertmanager_url"),
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
            idle_timeout_secs: upper.idle_timeout_secs.or(lower.idle_timeout_secs),
            absolute_timeout_secs: upper.absolute_timeout_secs.or(lower.absolute_timeout_secs),
            secure_cookies: upper.secure_cookies.or(lower.secure_cookies),
            login_max_failures: upper.login_max_failures.or(lower.login_max_failures),
            login_failure_window_secs: upper
                .login_failure_window_secs
                .or(lower.login_failure_window_secs),
            login_block_secs: upper.login_block_secs.or(lower.login_block_secs),
            login_attempts_per_minute: upper
                .login_attempts_per_minute
                .or(lower.login_attempts_per_minute),
            dashboard_refresh_secs: upper
                .dashboard_refresh_secs
                .or(lower.dashboard_refresh_secs),
            grafana_url: upper.grafana_url.or(lower.grafana_url),
            alertmanager_url: upper.alertmanager_url.or(lower.alertmanager_url),
        })
    }

    /// `secure_by_default`: whether cookies are `Secure` when the layers do
    /// not say (the public URL is https).
    pub fn resolve(self, secure_by_default: bool) -> PanelConfig {
        let d = PanelConfig::default();
        PanelConfig {
            idle_timeout_secs: self.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
            absolute_timeout_secs: self
                .absolute_timeout_secs
                .unwrap_or(d.absolute_timeout_secs),
            secure_cookies: self.secure_cookies.unwrap_or(secure_by_default),
            login_max_failures: self.login_max_failures.unwrap_or(d.login_max_failures),
            login_failure_window_secs: self
                .login_failure_window_secs
                .unwrap_or(d.login_failure_window_secs),
            login_block_secs: self.login_block_secs.unwrap_or(d.login_block_secs),
            login_attempts_per_minute: self
                .login_attempts_per_minute
                .unwrap_or(d.login_attempts_per_minute),
            dashboard_refresh_secs: self
                .dashboard_refresh_secs
                .unwrap_or(d.dashboard_refresh_secs),
            grafana_url: self
                .grafana_url
                .map(|url| url.trim_end_matches('/').to_owned()),
            alertmanager_url: self
                .alertmanager_url
                .map(|url| url.trim_end_matches('/').to_owned()),
        }
    }
}

impl PanelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rules: [(&str, u64, u64, u64); 7] = [
            ("panel.idle_timeout_secs", self.idle_timeout_secs, 1, 86_400),
            (
                "panel.absolute_timeout_secs",
                self.absolute_timeout_secs,
                60,
                30 * 86_400,
            ),
            (
                "panel.login_max_failures",
                self.login_max_failures,
                1,
                1_000,
            ),
            (
                "panel.login_failure_window_secs",
                self.login_failure_window_secs,
                1,
                86_400,
            ),
            (
                "panel.login_block_secs",
                self.login_block_secs,
                1,
                30 * 86_400,
            ),
            (
                "panel.login_attempts_per_minute",
                self.login_attempts_per_minute,
                1,
                10_000,
            ),
            (
                "panel.dashboard_refresh_secs",
                self.dashboard_refresh_secs,
                1,
                3_600,
            ),
        ];
        for (name, value, min, max) in rules {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    message: format!("must be between {min} and {max}"),
                });
            }
        }
        let urls = [
            ("panel.grafana_url", &self.grafana_url, "http(s)://"),
            ("panel.alertmanager_url", &self.alertmanager_url, "http://"),
        ];
        for (name, url, scheme) in urls {
            // The panel reaches Alertmanager itself, over plain HTTP inside
            // the deployment; Grafana is only linked to.
            let fine = url.as_deref().is_none_or(|url| {
                url.starts_with("http://") || (scheme != "http://" && url.starts_with("https://"))
            });
            if !fine {
                return Err(ConfigError::Invalid {
                    name: name.into(),
                    message: format!("must start with {scheme}"),
                });
            }
        }
        if self.idle_timeout_secs > self.absolute_timeout_secs {
            return Err(ConfigError::Invalid {
                name: "panel.idle_timeout_secs".into(),
                message: "must not exceed panel.absolute_timeout_secs".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_bad_values_are_named() {
        let env: BTreeMap<String, String> = [("LATCHKEY_PANEL_IDLE_TIMEOUT_SECS", "5")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let config = PanelLayer::from_env(&env).unwrap().unwrap().resolve(false);
        assert_eq!(config.idle_timeout_secs, 5);
        assert_eq!(config.login_max_failures, 5);
        assert!(PanelLayer::from_env(&BTreeMap::new()).unwrap().is_none());

        let mut bad = PanelConfig::default();
        bad.idle_timeout_secs = bad.absolute_timeout_secs + 1;
        assert!(bad.validate().is_err());
    }
}
