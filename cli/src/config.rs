//! Service configuration in layers, validated once: compiled defaults, then a TOML file, then
//! `WATERLINE_<SECTION>__<KEY>` environment variables, then command-line flags.
//!
//! Every flag has a key: `--database-url` = `[database] url` = `WATERLINE_DATABASE__URL`
//! (also `WATERLINE_DATABASE_URL`), `--broker` = `[mqtt] broker` = `WATERLINE_MQTT__BROKER`
//! (also `WATERLINE_BROKER`), `--network` = `[network] path` = `WATERLINE_NETWORK__PATH`
//! (also `WATERLINE_NETWORK`), `--http` = `[http] listen` = `WATERLINE_HTTP__LISTEN`
//! (also `WATERLINE_HTTP`), `--config` = `WATERLINE_CONFIG`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};
use waterline_ingest::{IngestConfig, MqttConfig};

/// The whole service configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub mqtt: MqttConfig,
    pub ingest: IngestConfig,
    pub http: HttpConfig,
    pub network: NetworkConfig,
    pub modbus: waterline_ingest::modbus_poll::ModbusConfig,
    pub analytics: AnalyticsConfig,
    /// Directory that relative paths in the configuration (register maps) are resolved
    /// against: the config file's directory, else the working directory.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://USER@HOST:PORT/DB` (TimescaleDB or plain PostgreSQL) or `sqlite://PATH`.
    pub url: String,
    /// Connection pool size (PostgreSQL).
    pub max_connections: u32,
    /// Use TimescaleDB's hypertables, compression and continuous aggregates when the server
    /// has the extension.
    pub use_timescale: bool,
    /// TimescaleDB: compress raw chunks older than this many days.
    pub compress_after_days: u32,
    /// TimescaleDB: drop raw readings older than this many days (rollups are kept); 0 keeps all.
    pub retain_raw_days: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://waterline.db".into(),
            max_connections: 8,
            use_timescale: true,
            compress_after_days: 7,
            retain_raw_days: 0,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the API and dashboards in this process.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// `[network]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Path of the `network.toml` network description.
    pub path: Option<PathBuf>,
}

/// `[analytics]`: the scheduled analytics job (leakage, pressure, quality) of `serve`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// Run the job in this process. It needs `[network] path`; run it in one process per
    /// store (docs/operations.md).
    pub enabled: bool,
    /// Seconds between runs; the first run starts with the service.
    pub interval_secs: u64,
    /// Also run when ingest (in this process) has stored new readings, at most once every
    /// `min_gap_secs`; 0 turns runs on arrival off (the interval alone).
    pub arrival_min_gap_secs: u64,
    /// Days of history each run analyses (baselines need weeks; 2 to 400).
    pub lookback_days: u32,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 900,
            arrival_min_gap_secs: 300,
            lookback_days: 35,
        }
    }
}

/// A configuration problem, naming where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}: {message}")]
    File {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Command-line values that override the configuration (None = not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub broker: Option<String>,
    pub network: Option<PathBuf>,
    pub http: Option<String>,
}

/// Short environment names for the flags.
const FLAG_ALIASES: [(&str, &str, &str); 4] = [
    ("WATERLINE_DATABASE_URL", "database", "url"),
    ("WATERLINE_BROKER", "mqtt", "broker"),
    ("WATERLINE_NETWORK", "network", "path"),
    ("WATERLINE_HTTP", "http", "listen"),
];

/// `WATERLINE_` variables that are not configuration keys.
const NOT_CONFIG: [&str; 3] = ["WATERLINE_LOG", "WATERLINE_CONFIG", "WATERLINE_TEST_"];

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn set(table: &mut Table, section: &str, key: &str, value: Value) {
    let sec = table
        .entry(section.to_owned())
        .or_insert_with(|| Value::Table(Table::new()));
    if let Value::Table(t) = sec {
        t.insert(key.to_owned(), value);
    }
}

/// An environment value as TOML: numbers and booleans typed, anything else a string.
fn env_value(raw: &str) -> Value {
    if let Ok(v) = raw.parse::<i64>() {
        return Value::Integer(v);
    }
    if let Ok(v) = raw.parse::<f64>()
        && raw.contains('.')
    {
        return Value::Float(v);
    }
    match raw {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => Value::String(raw.to_owned()),
    }
}

fn check(table: &Table) -> Result<Config, String> {
    Config::deserialize(Value::Table(table.clone())).map_err(|e| e.message().to_owned())
}

impl Config {
    /// Loads the layers: defaults, `file` (if any), `env` (the process environment in
    /// production), then `flags`; validates the result once.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let file_err = |e: toml::de::Error| ConfigError::File {
                path: path.to_owned(),
                line: e.span().map_or(1, |s| line_of(&text, s.start)),
                message: e.message().trim().to_owned(),
            };
            // Typed parse first: its errors carry the line of the bad key or value.
            toml::from_str::<Config>(&text).map_err(file_err)?;
            table = text.parse::<Table>().map_err(file_err)?;
        }

        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("WATERLINE_"))
            .collect();
        vars.sort();
        for (var, raw) in vars {
            if NOT_CONFIG.iter().any(|p| var.starts_with(p)) {
                continue;
            }
            let (section, key) = match FLAG_ALIASES.iter().find(|(name, _, _)| *name == var) {
                Some((_, s, k)) => ((*s).to_owned(), (*k).to_owned()),
                None => {
                    let rest = &var["WATERLINE_".len()..];
                    let Some((s, k)) = rest.split_once("__") else {
                        return Err(ConfigError::Env {
                            var,
                            message: "not a configuration key; expected WATERLINE_<SECTION>__<KEY>, e.g. WATERLINE_DATABASE__URL".into(),
                        });
                    };
                    (s.to_ascii_lowercase(), k.to_ascii_lowercase())
                }
            };
            // Typed first (numbers, booleans); a text key whose value only looks like a
            // number (a password "123456") is taken as text.
            set(&mut table, &section, &key, env_value(&raw));
            if let Err(message) = check(&table) {
                set(&mut table, &section, &key, Value::String(raw));
                check(&table).map_err(|_| ConfigError::Env { var, message })?;
            }
        }

        let flag_values = [
            ("database", "url", flags.database_url.clone()),
            ("mqtt", "broker", flags.broker.clone()),
            (
                "network",
                "path",
                flags.network.as_ref().map(|p| p.display().to_string()),
            ),
            ("http", "listen", flags.http.clone()),
        ];
        for (s, k, v) in flag_values {
            if let Some(v) = v {
                set(&mut table, s, k, Value::String(v));
            }
        }
        let mut cfg = check(&table).map_err(ConfigError::Invalid)?;
        cfg.base_dir = file
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Cross-field checks, once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return Err(ConfigError::Invalid(format!(
                "database.url `{}` must start with postgres:// or sqlite://",
                waterline_store::redact_url(url)
            )));
        }
        let a = &self.analytics;
        if a.interval_secs < 10 {
            return Err(ConfigError::Invalid(format!(
                "analytics.interval_secs = {} is too short; at least 10 s between runs",
                a.interval_secs
            )));
        }
        if a.arrival_min_gap_secs > 0 && a.arrival_min_gap_secs < 5 {
            return Err(ConfigError::Invalid(format!(
                "analytics.arrival_min_gap_secs = {} is too short; 0 (off) or at least 5 s",
                a.arrival_min_gap_secs
            )));
        }
        if !(2..=400).contains(&a.lookback_days) {
            return Err(ConfigError::Invalid(format!(
                "analytics.lookback_days = {} must be between 2 and 400",
                a.lookback_days
            )));
        }
        let days = self.database.retain_raw_days;
        if days > 0 && days <= waterline_store::timescale::REFRESH_WINDOW_DAYS {
            return Err(ConfigError::Invalid(format!(
                "database.retain_raw_days = {days} must be 0 (keep all) or more than the {}-day window in which late data still reaches the rollups",
                waterline_store::timescale::REFRESH_WINDOW_DAYS
            )));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        self.http_addr()?;
        self.mqtt.validate().map_err(ConfigError::Invalid)?;
        self.modbus
            .load(&self.base_dir)
            .map_err(ConfigError::Invalid)?;
        self.ingest.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The HTTP listen address.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.http.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "http.listen `{}` is not an address like 127.0.0.1:8080",
                self.http.listen
            ))
        })
    }

    /// Store options derived from `[database]`.
    pub fn store_options(&self) -> waterline_store::StoreOptions {
        waterline_store::StoreOptions {
            max_connections: self.database.max_connections,
            use_timescale: self.database.use_timescale,
            timescale: waterline_store::TimescaleOptions {
                compress_after_days: self.database.compress_after_days,
                retain_raw_days: (self.database.retain_raw_days > 0)
                    .then_some(self.database.retain_raw_days),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_then_file_then_env_then_flags() {
        let f = file(
            "[database]\nurl = \"sqlite://file.db\"\nmax_connections = 3\n[ingest]\nbatch_linger_ms = 7\n",
        );
        let cfg = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(cfg.database.url, "sqlite://file.db");
        assert_eq!(cfg.database.max_connections, 3);
        assert_eq!(cfg.ingest.batch_linger_ms, 7);
        assert_eq!(cfg.http.listen, "127.0.0.1:8080");

        let cfg = Config::load(
            Some(f.path()),
            env(&[
                ("WATERLINE_DATABASE__URL", "sqlite://env.db"),
                ("WATERLINE_INGEST__BATCH_LINGER_MS", "9"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.database.url, "sqlite://env.db");
        assert_eq!(cfg.ingest.batch_linger_ms, 9);

        let flags = Overrides {
            database_url: Some("sqlite://flag.db".into()),
            ..Overrides::default()
        };
        let cfg = Config::load(
            Some(f.path()),
            env(&[("WATERLINE_DATABASE_URL", "sqlite://alias.db")]),
            &flags,
        )
        .unwrap();
        assert_eq!(cfg.database.url, "sqlite://flag.db");
        let cfg = Config::load(
            None,
            env(&[("WATERLINE_DATABASE_URL", "sqlite://alias.db")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.database.url, "sqlite://alias.db");
    }

    #[test]
    fn unknown_file_key_names_key_and_line() {
        let f = file("[database]\nurl = \"sqlite://x.db\"\nmax_conections = 3\n");
        let e = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("max_conections"), "{msg}");
    }

    #[test]
    fn bad_values_are_specific() {
        let f = file("[ingest]\nbatch_linger_ms = \"soon\"\n");
        let msg = Config::load(Some(f.path()), env(&[]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2"), "{msg}");

        let msg = Config::load(
            None,
            env(&[("WATERLINE_MQTT__INFLIGHT", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.starts_with("environment variable WATERLINE_MQTT__INFLIGHT"),
            "{msg}"
        );

        let msg = Config::load(
            None,
            env(&[("WATERLINE_DATABSE__URL", "x")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("databse"), "{msg}");

        let msg = Config::load(None, env(&[("WATERLINE_FOO", "x")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not a configuration key"), "{msg}");

        let flags = Overrides {
            database_url: Some("mysql://x".into()),
            ..Overrides::default()
        };
        let msg = Config::load(None, env(&[]), &flags)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("must start with postgres:// or sqlite://"),
            "{msg}"
        );

        let flags = Overrides {
            http: Some("localhost".into()),
            ..Overrides::default()
        };
        assert!(
            Config::load(None, env(&[]), &flags)
                .unwrap_err()
                .to_string()
                .contains("http.listen")
        );

        let flags = Overrides {
            broker: Some("amqp://x".into()),
            ..Overrides::default()
        };
        assert!(
            Config::load(None, env(&[]), &flags)
                .unwrap_err()
                .to_string()
                .contains("mqtt://")
        );
    }

    #[test]
    fn numeric_looking_text_values_stay_text() {
        let cfg = Config::load(
            None,
            env(&[
                ("WATERLINE_MQTT__PASSWORD", "123456"),
                ("WATERLINE_MQTT__USERNAME", "true"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.mqtt.password.as_deref(), Some("123456"));
        assert_eq!(cfg.mqtt.username.as_deref(), Some("true"));
    }

    #[test]
    fn retention_must_outlast_the_refresh_window() {
        let msg = Config::load(
            None,
            env(&[("WATERLINE_DATABASE__RETAIN_RAW_DAYS", "3")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("retain_raw_days"), "{msg}");
    }

    #[test]
    fn analytics_schedule_is_checked() {
        let cfg = Config::load(
            None,
            env(&[("WATERLINE_ANALYTICS__INTERVAL_SECS", "60")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(cfg.analytics.interval_secs, 60);
        assert_eq!(cfg.analytics.lookback_days, 35);
        for (var, value, key) in [
            ("WATERLINE_ANALYTICS__INTERVAL_SECS", "1", "interval_secs"),
            ("WATERLINE_ANALYTICS__LOOKBACK_DAYS", "1", "lookback_days"),
            (
                "WATERLINE_ANALYTICS__ARRIVAL_MIN_GAP_SECS",
                "2",
                "arrival_min_gap_secs",
            ),
        ] {
            let msg = Config::load(None, env(&[(var, value)]), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn reserved_variables_are_not_config_keys() {
        Config::load(
            None,
            env(&[
                ("WATERLINE_LOG", "debug"),
                ("WATERLINE_TEST_DATABASE_URL", "x"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
    }

    #[test]
    fn chirpstack_profile_codecs_load_from_the_documented_format() {
        let f = file(
            "[ingest.chirpstack_profiles.\"meter-v2\"]\nfields = [\n  { name = \"volume_m3\", offset = 0, kind = \"u32_le\", scale = 0.001, unit = \"m3\" },\n  { name = \"battery_pct\", offset = 4, kind = \"u8\" },\n]\n",
        );
        let cfg = Config::load(Some(f.path()), env(&[]), &Overrides::default()).unwrap();
        let codec = cfg.ingest.chirpstack_profiles.get("meter-v2").unwrap();
        assert_eq!(codec.fields.len(), 2);
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../waterline.example.toml");
        Config::load(Some(&path), env(&[]), &Overrides::default()).unwrap();
    }
}
