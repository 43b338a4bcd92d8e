//! The TOML configuration, the embedded default, flag overrides, and validation
//! that names the faulty field.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::cli::ServeArgs;

/// The embedded default configuration (loopback only).
pub(crate) const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration of `causeway serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// UDP and TCP STUN/TURN listeners.
    pub(crate) listen: Vec<SocketAddr>,
    /// SOFTWARE attribute; empty to omit.
    #[serde(default = "default_software")]
    pub(crate) software: String,
    /// Worker threads; 0 for one per core.
    #[serde(default)]
    pub(crate) threads: usize,
    /// Log level.
    #[serde(default = "default_log_level")]
    pub(crate) log_level: String,
    /// TCP listener settings.
    #[serde(default)]
    pub(crate) tcp: TcpConfig,
}

/// `[tcp]`: limits for stream clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TcpConfig {
    /// Most simultaneous TCP clients per worker.
    pub(crate) max_connections: usize,
    /// A connection idle this long is closed.
    pub(crate) idle_timeout_secs: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 4096,
            idle_timeout_secs: 600,
        }
    }
}

fn default_software() -> String {
    "causeway".into()
}

fn default_log_level() -> String {
    "info".into()
}

/// A configuration the server refuses to start with.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    Read(std::path::PathBuf, std::io::Error),
    /// The TOML is malformed or has unknown or mistyped keys.
    Parse(String, toml::de::Error),
    /// A field's value is not acceptable.
    Field(&'static str, String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            ConfigError::Parse(src, e) => write!(f, "{src}: {e}"),
            ConfigError::Field(field, why) => write!(f, "`{field}`: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The embedded default, or `--config FILE`, with the flags applied, validated.
    pub(crate) fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                Config::parse(&text, &path.display().to_string())?
            }
            None => Config::parse(DEFAULT_TOML, "embedded default config")?,
        };
        cfg.apply(args);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text; `source` names it in errors.
    pub(crate) fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(source.to_string(), e))
    }

    /// Applies the flags given on the command line.
    fn apply(&mut self, args: &ServeArgs) {
        if !args.listen.is_empty() {
            self.listen = args.listen.clone();
        }
        if let Some(s) = &args.software {
            self.software = s.clone();
        }
        if let Some(t) = args.threads {
            self.threads = t;
        }
        if let Some(l) = &args.log_level {
            self.log_level = l.clone();
        }
    }

    /// Refuses values the server cannot run with, naming the field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Err(ConfigError::Field(
                "listen",
                "at least one address is needed".into(),
            ));
        }
        let mut seen = HashSet::new();
        for a in &self.listen {
            if !seen.insert(a) {
                return Err(ConfigError::Field("listen", format!("{a} is listed twice")));
            }
        }
        if self.software.len() > 128 {
            return Err(ConfigError::Field(
                "software",
                "longer than 128 bytes".into(),
            ));
        }
        if !["off", "error", "warn", "info", "debug", "trace"].contains(&self.log_level.as_str()) {
            return Err(ConfigError::Field(
                "log_level",
                format!(
                    "`{}` is not one of off, error, warn, info, debug, trace",
                    self.log_level
                ),
            ));
        }
        if self.tcp.max_connections == 0 {
            return Err(ConfigError::Field(
                "tcp.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.tcp.idle_timeout_secs == 0 {
            return Err(ConfigError::Field(
                "tcp.idle_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The SOFTWARE attribute to send, if any.
    pub(crate) fn software(&self) -> Option<&str> {
        (!self.software.is_empty()).then_some(self.software.as_str())
    }

    /// Worker threads to run.
    pub(crate) fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_loopback() {
        let cfg = Config::load(&ServeArgs::default()).unwrap();
        assert_eq!(
            cfg.listen,
            vec!["127.0.0.1:3478".parse::<SocketAddr>().unwrap()]
        );
        assert!(cfg.listen.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = Config::parse("listen = []\nlisten_typo = 1\n", "test.toml").unwrap_err();
        assert!(e.to_string().contains("listen_typo"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut cfg = Config::parse(DEFAULT_TOML, "d").unwrap();
        cfg.log_level = "loud".into();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .starts_with("`log_level`")
        );
        let mut cfg = Config::parse(DEFAULT_TOML, "d").unwrap();
        cfg.listen.push(cfg.listen[0]);
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        let mut cfg = Config::parse(DEFAULT_TOML, "d").unwrap();
        cfg.listen.clear();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .starts_with("`listen`")
        );
    }

    #[test]
    fn flags_override_the_file() {
        let args = ServeArgs {
            listen: vec!["127.0.0.1:5000".parse().unwrap()],
            software: Some(String::new()),
            ..ServeArgs::default()
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!(cfg.listen, args.listen);
        assert_eq!(cfg.software(), None);
    }
}
