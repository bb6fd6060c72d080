//! Settings: flags beat environment variables (`TESSERA_*`), which beat the config file,
//! which beats the defaults. Every setting is checked at start with a clear error.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./tessera-data";
/// The invariant checker reads every row, so by default it runs hourly.
pub const DEFAULT_CHECK_INTERVAL_SECS: u64 = 3600;

/// The config file (`--config FILE` or `TESSERA_CONFIG`), TOML. See docs/OPERATIONS.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub redis_url: Option<String>,
    pub rate_limit_redis_failure: Option<String>,
    pub max_in_flight: Option<usize>,
    pub max_connections: Option<usize>,
    pub trust_forwarded_for: Option<bool>,
    pub public_url: Option<String>,
    pub check_interval: Option<u64>,
    pub backup_dir: Option<PathBuf>,
    pub backup_copy_dir: Option<PathBuf>,
    pub backup_interval: Option<u64>,
    pub backup_keep_hourly: Option<usize>,
    pub backup_keep_daily: Option<usize>,
    pub backup_key_file: Option<PathBuf>,
    pub backup_upload_command: Option<String>,
    pub webhook_allow_private_targets: Option<bool>,
    pub webhook_timeout: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub webhook_retry_base_ms: Option<u64>,
    pub nats_url: Option<String>,
    pub nats_stream: Option<String>,
    pub nats_subject_prefix: Option<String>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub storage: Storage,
    pub log_format: LogFormat,
    pub log_level: String,
    pub limits: LimitSettings,
    /// How often `serve` runs the invariant checker; `None` when turned off (0).
    pub check_interval: Option<std::time::Duration>,
    /// Scheduled backups inside `serve`; `None` unless a backup directory is set.
    pub backups: Option<BackupSettings>,
    pub events: crate::events::EventSettings,
    /// The URL clients reach this server by, for the links it hands out (export
    /// downloads); `None`: each request's `Host`.
    pub public_url: Option<String>,
}

/// Backups `serve` takes on a schedule (SQLite only).
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub dir: PathBuf,
    /// A second directory (another disk, a mounted remote) that receives a verified copy.
    pub copy_dir: Option<PathBuf>,
    pub interval: std::time::Duration,
    pub keep_hourly: usize,
    pub keep_daily: usize,
    pub key_file: Option<PathBuf>,
    /// Shell command run after each backup with `TESSERA_BACKUP_PATH` set, to ship it off
    /// site (for example `aws s3 cp --recursive` or `rclone copy` to S3-compatible storage).
    pub upload_command: Option<String>,
}

/// Hourly by default: with `synchronous=FULL` nothing acknowledged is lost to a crash;
/// backups cover a lost disk or a bad deploy, at an RPO of one interval.
pub const DEFAULT_BACKUP_INTERVAL_SECS: u64 = 3600;

/// Traffic protection settings.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Shares rate limits across nodes when set.
    pub redis_url: Option<String>,
    /// Refuse (true) or fall back to local limits (false) while Redis is unreachable.
    pub redis_fail_closed: bool,
    /// Requests one node has in progress before it sheds load.
    pub max_in_flight: usize,
    /// Open connections one node accepts.
    pub max_connections: usize,
    pub trust_forwarded_for: bool,
}

/// Flags and environment values of `serve` beyond storage, listening and logs: traffic,
/// the checker, backups and events (each may be absent; the config file and defaults
/// fill in).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct LimitArgs {
    /// Redis URL; when set, rate limits are shared by every node using it.
    #[arg(long, env = "TESSERA_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// While Redis is unreachable: 'open' (local limits) or 'closed' (503) [default: open].
    #[arg(long, env = "TESSERA_RATE_LIMIT_REDIS_FAILURE")]
    pub rate_limit_redis_failure: Option<String>,
    /// Requests in progress on this node before it sheds load [default: 2048].
    #[arg(long, env = "TESSERA_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Open connections this node accepts [default: 10000].
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Take client IPs from X-Forwarded-For (only behind a proxy you trust).
    #[arg(long, env = "TESSERA_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: Option<bool>,
    /// The URL clients reach this server by, such as https://promo.example.com, used in
    /// the links it hands out (export downloads) [default: each request's Host].
    #[arg(long, env = "TESSERA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds between runs of the invariant checker, results on /metrics; 0 turns it
    /// off [default: 3600].
    #[arg(long, env = "TESSERA_CHECK_INTERVAL")]
    pub check_interval: Option<u64>,
    /// Directory for scheduled backups of the embedded database; unset: no schedule.
    #[arg(long, env = "TESSERA_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Second directory that receives a verified copy of every scheduled backup.
    #[arg(long, env = "TESSERA_BACKUP_COPY_DIR")]
    pub backup_copy_dir: Option<PathBuf>,
    /// Seconds between scheduled backups [default: 3600].
    #[arg(long, env = "TESSERA_BACKUP_INTERVAL")]
    pub backup_interval: Option<u64>,
    /// Newest backups always kept [default: 24].
    #[arg(long, env = "TESSERA_BACKUP_KEEP_HOURLY")]
    pub backup_keep_hourly: Option<usize>,
    /// Days for which the newest backup of the day is kept [default: 7].
    #[arg(long, env = "TESSERA_BACKUP_KEEP_DAILY")]
    pub backup_keep_daily: Option<usize>,
    /// Encrypt backups with AES-256-GCM using this key file (32 bytes, raw or hex).
    #[arg(long, env = "TESSERA_BACKUP_KEY_FILE")]
    pub backup_key_file: Option<PathBuf>,
    /// Shell command run after each scheduled backup, with TESSERA_BACKUP_PATH set
    /// (ships it off site, e.g. to S3-compatible storage with rclone or aws-cli).
    #[arg(long, env = "TESSERA_BACKUP_UPLOAD_COMMAND")]
    pub backup_upload_command: Option<String>,
    /// Let webhooks target private, loopback and reserved addresses [default: false].
    #[arg(long, env = "TESSERA_WEBHOOK_ALLOW_PRIVATE_TARGETS")]
    pub webhook_allow_private_targets: Option<bool>,
    /// Seconds a webhook receiver has to answer [default: 10].
    #[arg(long, env = "TESSERA_WEBHOOK_TIMEOUT")]
    pub webhook_timeout: Option<u64>,
    /// Attempts before a delivery is dead-lettered [default: 10].
    #[arg(long, env = "TESSERA_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubling per attempt [default: 5000].
    #[arg(long, env = "TESSERA_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// NATS URL; when set, every event is also published to JetStream.
    #[arg(long, env = "TESSERA_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// JetStream stream name [default: TESSERA_EVENTS].
    #[arg(long, env = "TESSERA_NATS_STREAM")]
    pub nats_stream: Option<String>,
    /// Subject prefix; events go to <prefix>.<project>.<type> [default: tessera.events].
    #[arg(long, env = "TESSERA_NATS_SUBJECT_PREFIX")]
    pub nats_subject_prefix: Option<String>,
}

fn event_settings(file: &FileConfig, args: &LimitArgs) -> Result<crate::events::EventSettings> {
    let timeout = args.webhook_timeout.or(file.webhook_timeout).unwrap_or(10);
    if !(1..=60).contains(&timeout) {
        bail!("webhook_timeout must be from 1 to 60 seconds");
    }
    let attempts = args.webhook_max_attempts.or(file.webhook_max_attempts).unwrap_or(10);
    if !(1..=30).contains(&attempts) {
        bail!("webhook_max_attempts must be from 1 to 30");
    }
    let base = args.webhook_retry_base_ms.or(file.webhook_retry_base_ms).unwrap_or(5000);
    if !(10..=3_600_000).contains(&base) {
        bail!("webhook_retry_base_ms must be from 10 to 3600000");
    }
    let nats = match args.nats_url.clone().or_else(|| file.nats_url.clone()).filter(|u| !u.is_empty()) {
        None => None,
        Some(url) => {
            if !url.starts_with("nats://") {
                bail!("NATS URL must start with nats://");
            }
            let stream = args
                .nats_stream
                .clone()
                .or_else(|| file.nats_stream.clone())
                .unwrap_or_else(|| "TESSERA_EVENTS".into());
            if stream.is_empty() || stream.len() > 64 || !stream.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                bail!("nats_stream must be 1 to 64 letters, digits, '_' or '-'");
            }
            let subject_prefix = args
                .nats_subject_prefix
                .clone()
                .or_else(|| file.nats_subject_prefix.clone())
                .unwrap_or_else(|| "tessera.events".into());
            let token_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if subject_prefix.len() > 100 || !subject_prefix.split('.').all(token_ok) {
                bail!("nats_subject_prefix must be dot-separated tokens of letters, digits, '_' or '-'");
            }
            Some(crate::events::NatsSettings {
                url,
                stream,
                subject_prefix,
            })
        }
    };
    Ok(crate::events::EventSettings {
        webhook_allow_private_targets: args
            .webhook_allow_private_targets
            .or(file.webhook_allow_private_targets)
            .unwrap_or(false),
        webhook_timeout: std::time::Duration::from_secs(timeout),
        webhook_max_attempts: attempts,
        webhook_retry_base: std::time::Duration::from_millis(base),
        nats,
    })
}

fn backup_settings(file: &FileConfig, args: &LimitArgs, storage: &Storage) -> Result<Option<BackupSettings>> {
    let Some(dir) = args
        .backup_dir
        .clone()
        .or_else(|| file.backup_dir.clone())
        .filter(|d| !d.as_os_str().is_empty())
    else {
        return Ok(None);
    };
    if matches!(storage, Storage::Postgres(_)) {
        bail!("backup_dir schedules backups of the embedded SQLite database; back up PostgreSQL with its own tools (docs/OPERATIONS.md)");
    }
    let interval = args
        .backup_interval
        .or(file.backup_interval)
        .unwrap_or(DEFAULT_BACKUP_INTERVAL_SECS);
    if !(1..=7 * 24 * 3600).contains(&interval) {
        bail!("backup_interval must be from 1 to 604800 seconds");
    }
    let keep_hourly = args.backup_keep_hourly.or(file.backup_keep_hourly).unwrap_or(24);
    if !(1..=10_000).contains(&keep_hourly) {
        bail!("backup_keep_hourly must be from 1 to 10000");
    }
    let keep_daily = args.backup_keep_daily.or(file.backup_keep_daily).unwrap_or(7);
    if keep_daily > 3650 {
        bail!("backup_keep_daily must be at most 3650");
    }
    let copy_dir = args
        .backup_copy_dir
        .clone()
        .or_else(|| file.backup_copy_dir.clone())
        .filter(|d| !d.as_os_str().is_empty());
    if copy_dir.as_ref() == Some(&dir) {
        bail!("backup_copy_dir must differ from backup_dir");
    }
    Ok(Some(BackupSettings {
        dir,
        copy_dir,
        interval: std::time::Duration::from_secs(interval),
        keep_hourly,
        keep_daily,
        key_file: args.backup_key_file.clone().or_else(|| file.backup_key_file.clone()),
        upload_command: args
            .backup_upload_command
            .clone()
            .or_else(|| file.backup_upload_command.clone())
            .filter(|c| !c.trim().is_empty()),
    }))
}

pub fn limit_settings(file: &FileConfig, args: LimitArgs) -> Result<LimitSettings> {
    let redis_url = args.redis_url.or_else(|| file.redis_url.clone()).filter(|u| !u.is_empty());
    if let Some(u) = &redis_url {
        // This build's Redis client has no TLS: refuse rediss:// here rather than at the
        // first connection.
        if !u.starts_with("redis://") {
            bail!("Redis URL must start with redis:// (TLS to Redis is not supported by this build)");
        }
    }
    let failure = args
        .rate_limit_redis_failure
        .or_else(|| file.rate_limit_redis_failure.clone())
        .unwrap_or_else(|| "open".into());
    let redis_fail_closed = match failure.as_str() {
        "open" => false,
        "closed" => true,
        other => bail!("invalid rate_limit_redis_failure '{other}': expected 'open' or 'closed'"),
    };
    let max_in_flight = args.max_in_flight.or(file.max_in_flight).unwrap_or(2048);
    if !(16..=1_000_000).contains(&max_in_flight) {
        bail!("max_in_flight must be from 16 to 1000000");
    }
    let max_connections = args.max_connections.or(file.max_connections).unwrap_or(10_000);
    if !(16..=1_000_000).contains(&max_connections) {
        bail!("max_connections must be from 16 to 1000000");
    }
    Ok(LimitSettings {
        redis_url,
        redis_fail_closed,
        max_in_flight,
        max_connections,
        trust_forwarded_for: args.trust_forwarded_for.or(file.trust_forwarded_for).unwrap_or(false),
    })
}

pub fn storage(file: &FileConfig, data_dir: Option<PathBuf>, database_url: Option<String>) -> Result<Storage> {
    let url = database_url.or_else(|| file.database_url.clone()).filter(|u| !u.is_empty());
    if let Some(url) = url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!("database URL must start with postgres:// or postgresql:// (got a URL with another scheme)");
        }
        return Ok(Storage::Postgres(url));
    }
    let dir = data_dir
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if dir.as_os_str().is_empty() {
        bail!("data directory must not be empty");
    }
    Ok(Storage::Sqlite(dir))
}

pub fn settings(
    file: &FileConfig,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    limits: LimitArgs,
) -> Result<Settings> {
    let listen_raw = listen.or_else(|| file.listen.clone()).unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_raw
        .parse()
        .with_context(|| format!("invalid listen address '{listen_raw}': expected IP:PORT such as 127.0.0.1:8080"))?;
    let format_raw = log_format.or_else(|| file.log_format.clone()).unwrap_or_else(|| "json".to_string());
    let log_format = match format_raw.as_str() {
        "json" => LogFormat::Json,
        "text" => LogFormat::Text,
        other => bail!("invalid log format '{other}': expected 'json' or 'text'"),
    };
    let log_level = log_level.or_else(|| file.log_level.clone()).unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        bail!("invalid log level '{log_level}': expected error, warn, info, debug or trace");
    }
    let check_secs = limits.check_interval.or(file.check_interval).unwrap_or(DEFAULT_CHECK_INTERVAL_SECS);
    if check_secs > 7 * 24 * 3600 {
        bail!("check_interval must be 0 (off) or at most 604800 seconds (a week)");
    }
    let storage = storage(file, data_dir, database_url)?;
    let public_url = public_url(limits.public_url.clone().or_else(|| file.public_url.clone()))?;
    Ok(Settings {
        public_url,
        check_interval: (check_secs > 0).then(|| std::time::Duration::from_secs(check_secs)),
        listen,
        backups: backup_settings(file, &limits, &storage)?,
        events: event_settings(file, &limits)?,
        storage,
        log_format,
        log_level,
        limits: limit_settings(file, limits)?,
    })
}

/// Checks `public_url`: http(s), a host, an optional path prefix, nothing else. Kept
/// without its trailing slash.
fn public_url(raw: Option<String>) -> Result<Option<String>> {
    let Some(raw) = raw.filter(|u| !u.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = url::Url::parse(raw.trim()).with_context(|| format!("invalid public_url '{raw}'"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("public_url must be an http:// or https:// URL with a host, such as https://promo.example.com");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("public_url must not carry credentials, a query or a fragment");
    }
    Ok(Some(parsed.as_str().trim_end_matches('/').to_string()))
}

/// Management credentials from `TESSERA_MANAGEMENT_ID` and `TESSERA_MANAGEMENT_TOKEN`:
/// both or neither.
pub fn management_credentials() -> Result<Option<(String, String)>> {
    let id = std::env::var("TESSERA_MANAGEMENT_ID").ok().filter(|s| !s.is_empty());
    let token = std::env::var("TESSERA_MANAGEMENT_TOKEN").ok().filter(|s| !s.is_empty());
    match (id, token) {
        (Some(id), Some(token)) => {
            if token.len() < 16 {
                bail!("TESSERA_MANAGEMENT_TOKEN must be at least 16 characters");
            }
            if id.len() > 128 || token.len() > 128 {
                bail!("TESSERA_MANAGEMENT_ID and TESSERA_MANAGEMENT_TOKEN must be at most 128 characters");
            }
            Ok(Some((id, token)))
        }
        (None, None) => Ok(None),
        _ => bail!("set both TESSERA_MANAGEMENT_ID and TESSERA_MANAGEMENT_TOKEN, or neither"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_is_checked_and_trimmed() {
        let file: FileConfig = toml::from_str("public_url = \"https://promo.example.com/api/\"").expect("valid");
        let s = settings(&file, None, None, None, None, None, LimitArgs::default()).expect("valid");
        assert_eq!(s.public_url.as_deref(), Some("https://promo.example.com/api"));
        for bad in ["promo.example.com", "ftp://x", "https://u:p@x", "https://x/?a=1", "https://"] {
            assert!(public_url(Some(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(public_url(Some("  ".into())).expect("blank is unset"), None);
    }

    #[test]
    fn precedence_and_defaults() {
        let file: FileConfig = toml::from_str("listen = \"0.0.0.0:9000\"\ndata_dir = \"/var/lib/tessera\"").expect("valid");
        let s = settings(&file, None, None, None, None, None, LimitArgs::default()).expect("valid");
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(s.storage, Storage::Sqlite("/var/lib/tessera".into()));
        let s = settings(
            &file,
            Some("127.0.0.1:1".into()),
            None,
            Some("postgres://x/y".into()),
            None,
            None,
            LimitArgs::default(),
        )
        .expect("valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:1");
        assert_eq!(s.storage, Storage::Postgres("postgres://x/y".into()));
        let d = settings(&FileConfig::default(), None, None, None, None, None, LimitArgs::default()).expect("valid");
        assert_eq!(d.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(d.storage, Storage::Sqlite(DEFAULT_DATA_DIR.into()));
        assert_eq!(d.log_format, LogFormat::Json);
    }

    #[test]
    fn invalid_settings_are_refused() {
        let f = FileConfig::default();
        assert!(settings(&f, Some("localhost".into()), None, None, None, None, LimitArgs::default()).is_err());
        assert!(settings(&f, None, None, Some("mysql://x".into()), None, None, LimitArgs::default()).is_err());
        assert!(settings(&f, None, None, None, Some("xml".into()), None, LimitArgs::default()).is_err());
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let too_long = LimitArgs {
            check_interval: Some(8 * 24 * 3600),
            ..LimitArgs::default()
        };
        assert!(settings(&f, None, None, None, None, None, too_long).is_err());
        let off = LimitArgs {
            check_interval: Some(0),
            ..LimitArgs::default()
        };
        assert_eq!(settings(&f, None, None, None, None, None, off).expect("valid").check_interval, None);
        let d = settings(&f, None, None, None, None, None, LimitArgs::default()).expect("valid");
        assert_eq!(d.check_interval, Some(std::time::Duration::from_secs(DEFAULT_CHECK_INTERVAL_SECS)));
    }

    /// Every key the example file documents, commented out or not, is one the parser
    /// accepts, and the values shown are valid together.
    #[test]
    fn the_example_config_file_parses_with_every_key_enabled() {
        let text = include_str!("../../../tessera.example.toml");
        let enabled: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let file: FileConfig = toml::from_str(&enabled).expect("every documented key parses");
        assert!(file.backup_dir.is_some() && file.nats_url.is_some() && file.webhook_timeout.is_some());
        // The example enables PostgreSQL too; backups are SQLite-only, so check them
        // without it.
        let sqlite_only = FileConfig {
            database_url: None,
            ..file
        };
        settings(&sqlite_only, None, None, None, None, None, LimitArgs::default()).expect("the documented values are valid");
    }

    #[test]
    fn backup_settings_defaults_and_refusals() {
        let f = FileConfig::default();
        assert!(settings(&f, None, None, None, None, None, LimitArgs::default())
            .expect("valid")
            .backups
            .is_none());
        let on = LimitArgs {
            backup_dir: Some("/backups".into()),
            ..LimitArgs::default()
        };
        let b = settings(&f, None, None, None, None, None, on.clone())
            .expect("valid")
            .backups
            .expect("on");
        assert_eq!(
            (b.interval.as_secs(), b.keep_hourly, b.keep_daily),
            (DEFAULT_BACKUP_INTERVAL_SECS, 24, 7)
        );
        assert!(settings(&f, None, None, Some("postgres://x/y".into()), None, None, on.clone()).is_err());
        let same = LimitArgs {
            backup_copy_dir: Some("/backups".into()),
            ..on.clone()
        };
        assert!(settings(&f, None, None, None, None, None, same).is_err());
        let zero = LimitArgs {
            backup_interval: Some(0),
            ..on
        };
        assert!(settings(&f, None, None, None, None, None, zero).is_err());
        let file: FileConfig = toml::from_str("backup_dir = \"/b\"\nbackup_keep_daily = 30").expect("valid");
        let b = settings(&file, None, None, None, None, None, LimitArgs::default())
            .expect("valid")
            .backups
            .expect("on");
        assert_eq!(b.keep_daily, 30);
    }
}
