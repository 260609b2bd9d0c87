//! The control plane's configuration, read in layers: built-in defaults, then
//! an optional TOML file (its path in `LATCHKEY_CONFIG`), then environment
//! variables named `LATCHKEY_<OPTION>` in upper case. Each later layer wins.
//!
//! The three secrets (`DATABASE_URL`, `SECRET_KEY`, `JWT_SECRET`) have no
//! default; they are read from their plain names or with the `LATCHKEY_`
//! prefix (the prefixed name wins), or from the file. Everything is checked
//! by [`Config::load`], before anything binds a socket.
//!
//! Option names carry their unit (`_secs`, `_bytes`, `_months`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use latchkey_shared::forwarded::{BadProxy, TrustedProxies};

use crate::secrets::Secrets;
use backups::BackupLayer;
pub use backups::{BackupConfig, TimeOfDay};
use env::Env;
pub use panel::PanelConfig;
use panel::PanelLayer;

mod backups;
mod env;
mod panel;

/// The environment variable naming the optional TOML file.
pub const CONFIG_FILE_VAR: &str = "LATCHKEY_CONFIG";
/// The prefix of every option's environment variable.
pub const ENV_PREFIX: &str = "LATCHKEY_";

const SECRET_HINT: &str = "generate a secret with `openssl rand -base64 48`";
const MIN_JWT_SECRET_CHARS: usize = 32;

/// Everything the control plane reads at start, validated.
#[derive(Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    /// Protects license keys and TOTP secrets at rest and keys API key hashes.
    pub secret_key: SecretString,
    /// HS256 key of the admin API's short-lived tokens.
    pub jwt_secret: SecretString,
    pub max_body_bytes: usize,
    /// To read a request's headers (also how long an idle keep-alive
    /// connection stays open).
    pub header_timeout_secs: u64,
    /// From the headers read to the answer's start.
    pub request_timeout_secs: u64,
    pub jwt_ttl_secs: u64,
    /// The Ed25519 key (PKCS#8 PEM) snapshots and leases are signed with.
    pub signing_key_path: Option<PathBuf>,
    /// Where edges connect (QUIC); no link when unset. Needs `signing_key_path`.
    pub link_listen_addr: Option<SocketAddr>,
    /// Where control keeps its link certificate (edges pin it).
    pub link_dir: PathBuf,
    /// How long a session token lasts. A session's heartbeat interval is
    /// not control's configuration: its product's, else the edge
    /// configuration's, both set in the panel.
    pub session_token_ttl_secs: u64,
    pub heartbeat_retention_months: u32,
    pub log_format: LogFormat,
    /// The admin panel: sessions and the login guard (`[panel]` in the file).
    pub panel: PanelConfig,
    /// Backups with pg_dump: where, when, how many kept (`[backups]`).
    pub backups: BackupConfig,
    /// Redis shared by control replicas (login counters); `None`: in-process.
    pub redis_url: Option<SecretString>,
    /// Where admins reach the panel (`https://licenses.example.com`). With
    /// `https`, panel cookies are `Secure` and `__Host-` unless
    /// `panel.secure_cookies` says otherwise.
    pub public_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` are believed
    /// (addresses or CIDR ranges, comma-separated); none by default, so the
    /// socket peer is the client.
    pub trusted_proxies: TrustedProxies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "missing required configuration: {}. Set each as an environment variable (the plain name or with the \
         LATCHKEY_ prefix) or in the TOML file named by LATCHKEY_CONFIG; SECRET_KEY and JWT_SECRET must be at \
         least 32 characters: {SECRET_HINT}",
        .names.join(", ")
    )]
    Missing { names: Vec<&'static str> },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
}

impl Config {
    /// Reads the process environment and the file it names.
    pub fn load() -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let file = match env.get(CONFIG_FILE_VAR).filter(|path| !path.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::File {
                    path: path.clone(),
                    message: error.to_string(),
                })?;
                Some((path, text))
            }
            None => None,
        };
        Self::from_layers(
            file.as_ref()
                .map(|(path, text)| (path.as_path(), text.as_str())),
            &env,
        )
    }

    /// The layering without touching the process: `file` is a path (for
    /// messages) and its TOML text, `env` the environment variables.
    pub fn from_layers(
        file: Option<(&Path, &str)>,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file_layer = match file {
            Some((path, text)) => {
                toml::from_str::<Layer>(text).map_err(|error| ConfigError::File {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?
            }
            None => Layer::default(),
        };
        let env_layer = Layer::from_env(env)?;
        let merged = env_layer.over(file_layer);

        let mut missing = Vec::new();
        for (name, value) in [
            ("DATABASE_URL", &merged.database_url),
            ("SECRET_KEY", &merged.secret_key),
            ("JWT_SECRET", &merged.jwt_secret),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(ConfigError::Missing { names: missing });
        }

        let defaults = Defaults::default();
        let config = Config {
            listen_addr: merged.listen_addr.unwrap_or(defaults.listen_addr),
            database_url: merged.database_url.unwrap_or_default().into(),
            database_max_connections: merged
                .database_max_connections
                .unwrap_or(defaults.database_max_connections),
            secret_key: merged.secret_key.unwrap_or_default().into(),
            jwt_secret: merged.jwt_secret.unwrap_or_default().into(),
            max_body_bytes: merged.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            header_timeout_secs: merged
                .header_timeout_secs
                .unwrap_or(defaults.header_timeout_secs),
            request_timeout_secs: merged
                .request_timeout_secs
                .unwrap_or(defaults.request_timeout_secs),
            jwt_ttl_secs: merged.jwt_ttl_secs.unwrap_or(defaults.jwt_ttl_secs),
            signing_key_path: merged.signing_key_path,
            link_listen_addr: merged.link_listen_addr,
            link_dir: merged
                .link_dir
                .unwrap_or_else(|| PathBuf::from(".data/link")),
            session_token_ttl_secs: merged
                .session_token_ttl_secs
                .unwrap_or(defaults.session_token_ttl_secs),
            heartbeat_retention_months: merged
                .heartbeat_retention_months
                .unwrap_or(defaults.heartbeat_retention_months),
            log_format: merged.log_format.unwrap_or(LogFormat::Text),
            panel: merged.panel.unwrap_or_default().resolve(
                merged
                    .public_url
                    .as_deref()
                    .is_some_and(|url| url.starts_with("https://")),
            ),
            backups: merged.backups.map(BackupLayer::resolve).unwrap_or_default(),
            redis_url: merged.redis_url.map(SecretString::from),
            trusted_proxies: match merged.trusted_proxies.as_deref() {
                Some(list) => list
                    .parse()
                    .map_err(|error: BadProxy| ConfigError::Invalid {
                        name: "trusted_proxies".into(),
                        message: error.to_string(),
                    })?,
                None => TrustedProxies::default(),
            },
            public_url: merged.public_url,
        };
        config.validate()?;
        Ok(config)
    }

    /// Every rule a value must follow; the first broken one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return invalid("DATABASE_URL", "must be a postgres:// or postgresql:// URL");
        }
        if let Err(error) = Secrets::new(self.secret_key.expose_secret()) {
            return invalid("SECRET_KEY", error.to_string());
        }
        if self.jwt_secret.expose_secret().chars().count() < MIN_JWT_SECRET_CHARS {
            return invalid(
                "JWT_SECRET",
                format!("must be at least {MIN_JWT_SECRET_CHARS} characters ({SECRET_HINT})"),
            );
        }
        if self.jwt_secret.expose_secret() == self.secret_key.expose_secret() {
            return invalid(
                "JWT_SECRET",
                "must differ from SECRET_KEY: one leaking must say nothing of the other",
            );
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return invalid("public_url", "must be an https:// (or http://) URL");
        }
        if !(1..=1_000).contains(&self.database_max_connections) {
            return invalid("database_max_connections", "must be between 1 and 1000");
        }
        if !(1_024..=64 * 1_048_576).contains(&self.max_body_bytes) {
            return invalid(
                "max_body_bytes",
                "must be between 1024 and 67108864 (64 MiB)",
            );
        }
        if !(1..=300).contains(&self.header_timeout_secs) {
            return invalid("header_timeout_secs", "must be between 1 and 300");
        }
        if !(1..=3_600).contains(&self.request_timeout_secs) {
            return invalid("request_timeout_secs", "must be between 1 and 3600");
        }
        if !(60..=86_400).contains(&self.jwt_ttl_secs) {
            return invalid("jwt_ttl_secs", "must be between 60 and 86400");
        }
        if !(600..=30 * 86_400).contains(&self.session_token_ttl_secs) {
            return invalid(
                "session_token_ttl_secs",
                "must be between 600 and 2592000 (30 days)",
            );
        }
        if self.link_listen_addr.is_some() && self.signing_key_path.is_none() {
            return invalid(
                "link_listen_addr",
                "the edge link publishes signed snapshots: set signing_key_path too",
            );
        }
        if !(1..=120).contains(&self.heartbeat_retention_months) {
            return invalid("heartbeat_retention_months", "must be between 1 and 120");
        }
        self.panel.validate()?;
        self.backups.validate()?;
        if let Some(path) = &self.signing_key_path
            && !path.is_file()
        {
            return invalid(
                "signing_key_path",
                format!(
                    "{} is not a readable file (create one with `latchkey-control keys generate`)",
                    path.display()
                ),
            );
        }
        Ok(())
    }

    /// The keys derived from `SECRET_KEY` (already validated by `load`).
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        Secrets::new(self.secret_key.expose_secret()).map_err(|error| ConfigError::Invalid {
            name: "SECRET_KEY".into(),
            message: error.to_string(),
        })
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &"[redacted]")
            .field("database_max_connections", &self.database_max_connections)
            .field("secret_key", &"[redacted]")
            .field("jwt_secret", &"[redacted]")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_timeout_secs", &self.header_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("jwt_ttl_secs", &self.jwt_ttl_secs)
            .field("signing_key_path", &self.signing_key_path)
            .field("link_listen_addr", &self.link_listen_addr)
            .field("link_dir", &self.link_dir)
            .field("session_token_ttl_secs", &self.session_token_ttl_secs)
            .field(
                "heartbeat_retention_months",
                &self.heartbeat_retention_months,
            )
            .field("log_format", &self.log_format)
            .field("panel", &self.panel)
            .field("backups", &self.backups)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "[redacted]"))
            .field("public_url", &self.public_url)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("expected `text` or `json`".into()),
        }
    }
}

fn invalid(name: &str, message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        name: name.into(),
        message: message.into(),
    })
}

#[derive(Debug)]
struct Defaults {
    listen_addr: SocketAddr,
    database_max_connections: u32,
    max_body_bytes: usize,
    header_timeout_secs: u64,
    request_timeout_secs: u64,
    jwt_ttl_secs: u64,
    session_token_ttl_secs: u64,
    heartbeat_retention_months: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_max_connections: 10,
            max_body_bytes: 1_048_576,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            jwt_ttl_secs: 900,
            session_token_ttl_secs: 86_400,
            heartbeat_retention_months: 13,
        }
    }
}

/// One layer's values; `None` where the layer says nothing. The file refuses
/// unknown keys, so a misspelt option is an error rather than a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen_addr: Option<SocketAddr>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    secret_key: Option<String>,
    jwt_secret: Option<String>,
    max_body_bytes: Option<usize>,
    header_timeout_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    jwt_ttl_secs: Option<u64>,
    signing_key_path: Option<PathBuf>,
    link_listen_addr: Option<SocketAddr>,
    link_dir: Option<PathBuf>,
    session_token_ttl_secs: Option<u64>,
    heartbeat_retention_months: Option<u32>,
    log_format: Option<LogFormat>,
    panel: Option<PanelLayer>,
    backups: Option<BackupLayer>,
    redis_url: Option<String>,
    public_url: Option<String>,
    trusted_proxies: Option<String>,
}

impl Layer {
    fn from_env(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env::new(vars, "");
        Ok(Self {
            listen_addr: env.parse("listen_addr")?,
            database_url: env.secret("database_url"),
            database_max_connections: env.parse("database_max_connections")?,
            secret_key: env.secret("secret_key"),
            jwt_secret: env.secret("jwt_secret"),
            max_body_bytes: env.parse("max_body_bytes")?,
            header_timeout_secs: env.parse("header_timeout_secs")?,
            request_timeout_secs: env.parse("request_timeout_secs")?,
            jwt_ttl_secs: env.parse("jwt_ttl_secs")?,
            signing_key_path: env.text("signing_key_path").map(PathBuf::from),
            link_listen_addr: env.parse("link_listen_addr")?,
            link_dir: env.text("link_dir").map(PathBuf::from),
            session_token_ttl_secs: env.parse("session_token_ttl_secs")?,
            heartbeat_retention_months: env.parse("heartbeat_retention_months")?,
            log_format: env.parse("log_format")?,
            panel: PanelLayer::from_env(vars)?,
            backups: BackupLayer::from_env(vars)?,
            redis_url: env.secret("redis_url"),
            public_url: env.text("public_url"),
            trusted_proxies: env.text("trusted_proxies"),
        })
    }

    /// `self` where it has a value, `below` elsewhere.
    fn over(self, below: Layer) -> Layer {
        Layer {
            listen_addr: self.listen_addr.or(below.listen_addr),
            database_url: self.database_url.or(below.database_url),
            database_max_connections: self
                .database_max_connections
                .or(below.database_max_connections),
            secret_key: self.secret_key.or(below.secret_key),
            jwt_secret: self.jwt_secret.or(below.jwt_secret),
            max_body_bytes: self.max_body_bytes.or(below.max_body_bytes),
            header_timeout_secs: self.header_timeout_secs.or(below.header_timeout_secs),
            request_timeout_secs: self.request_timeout_secs.or(below.request_timeout_secs),
            jwt_ttl_secs: self.jwt_ttl_secs.or(below.jwt_ttl_secs),
            signing_key_path: self.signing_key_path.or(below.signing_key_path),
            link_listen_addr: self.link_listen_addr.or(below.link_listen_addr),
            link_dir: self.link_dir.or(below.link_dir),
            session_token_ttl_secs: self.session_token_ttl_secs.or(below.session_token_ttl_secs),
            heartbeat_retention_months: self
                .heartbeat_retention_months
                .or(below.heartbeat_retention_months),
            log_format: self.log_format.or(below.log_format),
            panel: PanelLayer::stack(self.panel, below.panel),
            backups: BackupLayer::stack(self.backups, below.backups),
            redis_url: self.redis_url.or(below.redis_url),
            public_url: self.public_url.or(below.public_url),
            trusted_proxies: self.trusted_proxies.or(below.trusted_proxies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
    const JWT: &str = "0123456789abcdef0123456789abcdef-jwt";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn required() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DATABASE_URL", "postgres://localhost/latchkey"),
            ("SECRET_KEY", SECRET),
            ("JWT_SECRET", JWT),
        ]
    }

    #[test]
    fn defaults_apply_when_only_the_secrets_are_given() {
        let config = Config::from_layers(None, &env(&required())).unwrap();
        assert_eq!(
            config.listen_addr,
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.jwt_ttl_secs, 900);
        assert_eq!(config.session_token_ttl_secs, 86_400);
        assert_eq!(config.heartbeat_retention_months, 13);
        assert_eq!(config.signing_key_path, None);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_defaults() {
        let file = r#"
            listen_addr = "0.0.0.0:9000"
            max_body_bytes = 4096
            jwt_ttl_secs = 300
            database_url = "postgres://from-file/db"
        "#;
        let mut vars = required();
        vars.retain(|(name, _)| *name != "DATABASE_URL");
        vars.push(("LATCHKEY_JWT_TTL_SECS", "600"));
        let config = Config::from_layers(Some((Path::new("c.toml"), file)), &env(&vars)).unwrap();
        assert_eq!(
            config.listen_addr,
            "0.0.0.0:9000".parse::<SocketAddr>().unwrap(),
            "file"
        );
        assert_eq!(config.max_body_bytes, 4096, "file");
        assert_eq!(config.jwt_ttl_secs, 600, "environment over file");
        assert_eq!(config.session_token_ttl_secs, 86_400, "default");
        assert_eq!(
            config.database_url.expose_secret(),
            "postgres://from-file/db"
        );
    }

    #[test]
    fn secrets_are_read_with_or_without_the_prefix_and_the_prefix_wins() {
        let vars = env(&[
            ("LATCHKEY_DATABASE_URL", "postgres://prefixed/db"),
            ("DATABASE_URL", "postgres://plain/db"),
            ("LATCHKEY_SECRET_KEY", SECRET),
            ("JWT_SECRET", JWT),
        ]);
        let config = Config::from_layers(None, &vars).unwrap();
        assert_eq!(
            config.database_url.expose_secret(),
            "postgres://prefixed/db"
        );
        assert_eq!(config.secret_key.expose_secret(), SECRET);
        assert_eq!(config.jwt_secret.expose_secret(), JWT);
    }

    #[test]
    fn every_missing_secret_is_named_in_one_error_with_how_to_make_one() {
        let error = Config::from_layers(None, &env(&[("SECRET_KEY", SECRET), ("JWT_SECRET", "")]))
            .unwrap_err();
        assert_eq!(
            error,
            ConfigError::Missing {
                names: vec!["DATABASE_URL", "JWT_SECRET"]
            }
        );
        let message = error.to_string();
        assert!(message.contains("DATABASE_URL, JWT_SECRET"), "{message}");
        assert!(message.contains("openssl rand -base64 48"), "{message}");
        assert!(message.contains("LATCHKEY_"), "{message}");
    }

    #[test]
    fn bad_values_are_named() {
        let mut vars = required();
        vars.push(("LATCHKEY_MAX_BODY_BYTES", "lots"));
        match Config::from_layers(None, &env(&vars)).unwrap_err() {
            ConfigError::Invalid { name, .. } => assert_eq!(name, "LATCHKEY_MAX_BODY_BYTES"),
            other => panic!("unexpected {other:?}"),
        }

        let mut vars = required();
        vars.push(("JWT_SECRET", "short"));
        vars.remove(2);
        let error = Config::from_layers(None, &env(&vars)).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { name, message } if name == "JWT_SECRET" && message.contains("openssl")),
            "{error}"
        );

        let mut vars = required();
        vars.push(("LATCHKEY_SESSION_TOKEN_TTL_SECS", "60"));
        let error = Config::from_layers(None, &env(&vars)).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { name, .. } if name == "session_token_ttl_secs"),
            "{error}"
        );

        let mut vars = required();
        vars.push(("LATCHKEY_SIGNING_KEY_PATH", "/nonexistent/signing.pem"));
        let error = Config::from_layers(None, &env(&vars)).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { name, .. } if name == "signing_key_path"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let error = Config::from_layers(
            Some((Path::new("c.toml"), "max_body_size = 10\n")),
            &env(&required()),
        )
        .unwrap_err();
        assert!(
            matches!(&error, ConfigError::File { message, .. } if message.contains("max_body_size")),
            "{error}"
        );
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let config = Config::from_layers(None, &env(&required())).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains(SECRET) && !shown.contains(JWT) && !shown.contains("localhost"));
    }
}
