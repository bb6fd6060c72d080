//! `tessera`: one binary, several roles.

mod backup;
mod config;
mod events;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use config::{FileConfig, LogFormat, Settings, Storage};
use std::path::PathBuf;
use std::time::Duration;
use tessera_api::{openapi, AppState};
use tessera_domain::project::ProjectInput;
use tessera_store::ops::org::Management;

use tessera_store::Store;

// Request handling allocates many small short-lived objects (JSON trees, SQL parameters)
// on several threads; glibc's malloc spent about a quarter of the SQLite writer thread's
// time and of a validation's CPU in profiles (bench/RESULTS.md). mimalloc's per-thread
// free lists serve that pattern at a fraction of the cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Promotion and loyalty engine compatible with Voucherify's API v1"
)]
struct Cli {
    /// TOML config file (see docs/OPERATIONS.md).
    #[arg(long, env = "TESSERA_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct StorageArgs {
    /// Directory of the embedded SQLite database [default: ./tessera-data].
    #[arg(long, env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...); when set, PostgreSQL is used instead of SQLite.
    #[arg(long, env = "TESSERA_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve {
        #[command(flatten)]
        storage: StorageArgs,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "TESSERA_LISTEN")]
        listen: Option<String>,
        /// Log format: json or text [default: json].
        #[arg(long, env = "TESSERA_LOG_FORMAT")]
        log_format: Option<String>,
        /// Log level filter [default: info].
        #[arg(long, env = "TESSERA_LOG_LEVEL")]
        log_level: Option<String>,
        #[command(flatten)]
        extra: config::LimitArgs,
    },
    /// Back up the embedded database, or verify a backup by restoring it.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Replace the embedded database with a verified backup. The server must be stopped;
    /// the replaced files are kept in the data directory under pre-restore-<time>.
    Restore {
        /// The backup directory (tessera-backup-...).
        backup: PathBuf,
        /// Data directory to restore into [default: ./tessera-data].
        #[arg(long, env = "TESSERA_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Key file of an encrypted backup.
        #[arg(long, env = "TESSERA_BACKUP_KEY_FILE")]
        backup_key_file: Option<PathBuf>,
    },
    /// Manage projects from the command line.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Print the OpenAPI document of this build.
    Openapi,
    /// Check the database's invariants with the independent checker; exits 1 on any
    /// violation.
    Check {
        #[command(flatten)]
        storage: StorageArgs,
        /// Output: text (a report) or prometheus (metrics) [default: text].
        #[arg(long, default_value = "text")]
        format: String,
    },
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Take a consistent snapshot while the server keeps running.
    Create {
        /// Data directory of the database [default: ./tessera-data].
        #[arg(long, env = "TESSERA_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Directory that receives the backup (a new tessera-backup-<time> inside it).
        #[arg(long, env = "TESSERA_BACKUP_DIR")]
        out: Option<PathBuf>,
        /// Encrypt with AES-256-GCM using this key file (32 bytes, raw or hex).
        #[arg(long, env = "TESSERA_BACKUP_KEY_FILE")]
        backup_key_file: Option<PathBuf>,
    },
    /// Restore a backup into a temporary directory and check it: checksums, SQLite
    /// integrity, schema version and every invariant. Exits 1 if anything is wrong.
    Verify {
        /// The backup directory (tessera-backup-...).
        backup: PathBuf,
        /// Key file of an encrypted backup.
        #[arg(long, env = "TESSERA_BACKUP_KEY_FILE")]
        backup_key_file: Option<PathBuf>,
    },
    /// List the complete backups in a directory, newest first.
    List {
        #[arg(long, env = "TESSERA_BACKUP_DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProjectCommand {
    /// Create a project and print its keys (shown only once).
    Create {
        #[command(flatten)]
        storage: StorageArgs,
        #[arg(long)]
        name: String,
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// Print the result as JSON, in the management API's shape.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Reads wait for a connection before taking a blocking thread, so few are ever
        // busy; the cap keeps a burst from spawning hundreds (tokio's default is 512).
        .max_blocking_threads(64)
        .build()
        .context("cannot start the async runtime")?;
    let outcome = run_command(&runtime, file, cli.command);
    // A backup or upload still running on a blocking thread must not hold the exit (a
    // runtime's drop would wait for it): what it was writing is under a temporary name.
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}

fn run_command(runtime: &tokio::runtime::Runtime, file: FileConfig, command: Command) -> Result<()> {
    match command {
        Command::Serve {
            storage,
            listen,
            log_format,
            log_level,
            extra,
        } => {
            let settings = config::settings(&file, listen, storage.data_dir, storage.database_url, log_format, log_level, extra)?;
            init_logs(&settings);
            runtime.block_on(serve(settings))
        }
        Command::Project {
            command:
                ProjectCommand::Create {
                    storage,
                    name,
                    timezone,
                    currency,
                    json,
                },
        } => {
            let storage = config::storage(&file, storage.data_dir, storage.database_url)?;
            runtime.block_on(project_create(storage, name, timezone, currency, json))
        }
        Command::Migrate { storage } => {
            let storage = config::storage(&file, storage.data_dir, storage.database_url)?;
            let store = open_store(&storage)?;
            store.shutdown();
            println!("schema at version {}", tessera_store::migrations::SCHEMA_VERSION);
            Ok(())
        }
        Command::Check { storage, format } => {
            if format != "text" && format != "prometheus" {
                anyhow::bail!("invalid format '{format}': expected text or prometheus");
            }
            let storage = config::storage(&file, storage.data_dir, storage.database_url)?;
            let report = match &storage {
                Storage::Sqlite(dir) => tessera_check::check_sqlite(dir),
                Storage::Postgres(url) => tessera_check::check_postgres(url),
            }
            .map_err(|e| anyhow::anyhow!("cannot check the database: {e}"))?;
            match format.as_str() {
                "prometheus" => print!("{}", report.to_prometheus()),
                "text" => print!("{}", report.to_text()),
                other => anyhow::bail!("invalid format '{other}': expected text or prometheus"),
            }
            if !report.is_ok() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Openapi => {
            println!("{}", openapi::json());
            Ok(())
        }
        Command::Backup { command } => backup_command(&file, command),
        Command::Restore {
            backup,
            data_dir,
            backup_key_file,
        } => {
            let Storage::Sqlite(dir) = config::storage(&file, data_dir, None)? else {
                anyhow::bail!("restore replaces the embedded SQLite database");
            };
            let key = key_from(backup_key_file.or_else(|| file.backup_key_file.clone()))?;
            let started = std::time::Instant::now();
            let done = backup::restore(&backup, &dir, key.as_ref())?;
            println!(
                "restored {} (taken {}, schema version {}) into {} in {:.1} s",
                backup.display(),
                done.manifest.created_at,
                done.manifest.schema_version,
                dir.display(),
                started.elapsed().as_secs_f64()
            );
            if let Some(prev) = done.previous {
                println!("the replaced files are kept in {}", prev.display());
            }
            Ok(())
        }
    }
}

fn key_from(path: Option<PathBuf>) -> Result<Option<backup::Key>> {
    path.map(|p| backup::load_key(&p)).transpose()
}

fn backup_command(file: &FileConfig, command: BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Create {
            data_dir,
            out,
            backup_key_file,
        } => {
            let Storage::Sqlite(dir) = config::storage(file, data_dir, None)? else {
                anyhow::bail!("backup create copies the embedded SQLite database");
            };
            let out = out
                .or_else(|| file.backup_dir.clone())
                .context("say where the backup goes: --out DIR (or TESSERA_BACKUP_DIR / backup_dir)")?;
            let key = key_from(backup_key_file.or_else(|| file.backup_key_file.clone()))?;
            let started = std::time::Instant::now();
            let (path, m) = backup::create(&dir, &out, key.as_ref())?;
            println!(
                "backup {} taken in {:.1} s: {} bytes, schema version {}{}",
                path.display(),
                started.elapsed().as_secs_f64(),
                m.database_bytes,
                m.schema_version,
                if m.encryption.is_some() { ", encrypted" } else { "" }
            );
            Ok(())
        }
        BackupCommand::Verify { backup, backup_key_file } => {
            let key = key_from(backup_key_file.or_else(|| file.backup_key_file.clone()))?;
            let started = std::time::Instant::now();
            match backup::verify(&backup, key.as_ref()) {
                Ok(v) => {
                    println!(
                        "backup {} is good: restored and checked in {:.1} s (taken {}, schema version {}, {} bytes, {} invariants hold)",
                        backup.display(),
                        started.elapsed().as_secs_f64(),
                        v.manifest.created_at,
                        v.manifest.schema_version,
                        v.manifest.database_bytes,
                        v.report.checks.len()
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("tessera: backup verification FAILED: {e:#}");
                    std::process::exit(1);
                }
            }
        }
        BackupCommand::List { dir } => {
            let dir = dir
                .or_else(|| file.backup_dir.clone())
                .context("say which directory: --dir DIR (or TESSERA_BACKUP_DIR / backup_dir)")?;
            for (path, m) in backup::list(&dir) {
                println!(
                    "{}\t{}\tschema {}\t{} bytes{}",
                    path.display(),
                    m.created_at,
                    m.schema_version,
                    m.database_bytes,
                    if m.encryption.is_some() { "\tencrypted" } else { "" }
                );
            }
            Ok(())
        }
    }
}

/// Takes a backup every `interval` (the first when the newest existing one is due, so
/// restarts do not postpone it), copies it to the second directory, applies retention,
/// and publishes the age of the last good backup.
async fn run_backups(data_dir: PathBuf, b: config::BackupSettings, key: Option<backup::Key>) {
    let last_dir = b.dir.clone();
    let mut last_good = tokio::task::spawn_blocking(move || backup::list(&last_dir).first().map(|(_, m)| m.created_unix))
        .await
        .ok()
        .flatten();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    loop {
        if let Some(t) = last_good {
            metrics::gauge!("tessera_backup_last_success_timestamp_seconds").set(t as f64);
            metrics::gauge!("tessera_backup_age_seconds").set((now() - t).max(0) as f64);
        }
        let due = last_good.map_or(0, |t| t + b.interval.as_secs() as i64);
        if now() < due {
            // Wake at least every 15 s so the age gauge stays current.
            let wait = ((due - now()) as u64).min(15);
            tokio::time::sleep(Duration::from_secs(wait.max(1))).await;
            continue;
        }
        let started = std::time::Instant::now();
        let (data, settings) = (data_dir.clone(), b.clone());
        let outcome = tokio::task::spawn_blocking(move || -> Result<(PathBuf, i64, Vec<PathBuf>)> {
            let (path, m) = backup::create(&data, &settings.dir, key.as_ref())?;
            // A backup counts, and lets older ones go, only once it has been restored and
            // checked: a damaged one must never push good ones out of retention.
            if let Err(e) = backup::verify(&path, key.as_ref()) {
                let _ = std::fs::remove_dir_all(&path);
                return Err(e.context("the new backup failed verification and was deleted"));
            }
            // From here the backup is good; a failing step after it is reported on its
            // own and does not make the schedule take another backup.
            let step_failed = |what: &str, e: anyhow::Error| {
                metrics::counter!("tessera_backup_step_failures_total", "step" => what.to_string()).increment(1);
                tracing::error!(error = %format!("{e:#}"), step = what, "backup step failed");
            };
            let mut removed = Vec::new();
            match backup::prune(&settings.dir, settings.keep_hourly, settings.keep_daily) {
                Ok(r) => removed.extend(r),
                Err(e) => step_failed("prune", e),
            }
            if let Some(copy) = &settings.copy_dir {
                match backup::copy_to(&path, copy).and_then(|_| backup::prune(copy, settings.keep_hourly, settings.keep_daily)) {
                    Ok(r) => removed.extend(r),
                    Err(e) => step_failed("copy", e),
                }
            }
            if let Some(cmd) = &settings.upload_command {
                match backup::upload(cmd, &path) {
                    Ok(()) => metrics::gauge!("tessera_backup_last_upload_timestamp_seconds").set(m.created_unix as f64),
                    Err(e) => step_failed("upload", e),
                }
            }
            Ok((path, m.created_unix, removed))
        })
        .await;
        match outcome {
            Ok(Ok((path, created, removed))) => {
                last_good = Some(created);
                metrics::gauge!("tessera_backup_duration_seconds").set(started.elapsed().as_secs_f64());
                tracing::info!(path = %path.display(), removed = removed.len(), secs = started.elapsed().as_secs_f64(), "backup taken");
            }
            Ok(Err(e)) => {
                metrics::counter!("tessera_backup_failures_total").increment(1);
                tracing::error!(error = %format!("{e:#}"), "scheduled backup failed");
                // Retry sooner than a whole interval, but do not spin.
                tokio::time::sleep(Duration::from_secs(60).min(b.interval)).await;
            }
            Err(e) => {
                metrics::counter!("tessera_backup_failures_total").increment(1);
                tracing::error!(error = %e, "scheduled backup task failed");
                tokio::time::sleep(Duration::from_secs(60).min(b.interval)).await;
            }
        }
    }
}

fn init_logs(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
}

fn open_store(storage: &Storage) -> Result<Store> {
    match storage {
        Storage::Sqlite(dir) => Store::open_sqlite(dir).with_context(|| format!("cannot open the database in {}", dir.display())),
        Storage::Postgres(url) => Store::open_postgres(url).context("cannot open the PostgreSQL database"),
    }
}

/// Creates the organization if needed; prints generated credentials exactly once, to the
/// terminal and never to the logs. `to_stderr` keeps stdout clean for commands whose output
/// scripts parse.
async fn init_org(store: &Store, to_stderr: bool) -> Result<()> {
    let creds = config::management_credentials()?;
    let (id, token) = creds.map(|(i, t)| (Some(i), Some(t))).unwrap_or((None, None));
    if let Some((id, token)) = store.init_organization(id, token).await? {
        let text = format!(
            "Created the organization. Management credentials (shown only now; store them safely):\n  X-Management-Id:    {id}\n  X-Management-Token: {token}\nSet TESSERA_MANAGEMENT_ID and TESSERA_MANAGEMENT_TOKEN to choose your own instead."
        );
        if to_stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

/// Runs the independent invariant checker every `every` (the first run one interval after
/// start) and publishes each check's violations on /metrics, so an alert can fire on any
/// of them. It reads through its own connection, never through the store it checks.
async fn run_checks(storage: Storage, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        let target = storage.clone();
        let report = tokio::task::spawn_blocking(move || match &target {
            Storage::Sqlite(dir) => tessera_check::check_sqlite(dir),
            Storage::Postgres(url) => tessera_check::check_postgres(url),
        })
        .await;
        let report = match report {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                metrics::counter!("tessera_invariant_check_errors_total").increment(1);
                tracing::error!(error = %e, "the invariant checker could not run");
                continue;
            }
            Err(e) => {
                metrics::counter!("tessera_invariant_check_errors_total").increment(1);
                tracing::error!(error = %e, "the invariant checker failed");
                continue;
            }
        };
        for c in &report.checks {
            metrics::gauge!("tessera_invariant_violations", "check" => c.name).set(c.violations as f64);
        }
        metrics::gauge!("tessera_invariant_check_last_run_timestamp_seconds").set(report.finished_at as f64);
        metrics::gauge!("tessera_invariant_check_duration_seconds").set(started.elapsed().as_secs_f64());
        if report.is_ok() {
            tracing::info!(checks = report.checks.len(), "invariant check passed");
        } else {
            tracing::error!(failed = ?report.failed(), "invariant check found violations: run `tessera check` for examples");
        }
    }
}

async fn serve(settings: Settings) -> Result<()> {
    // One server per data directory: two would each believe they own every request's
    // idempotency record, and restore must know nobody is using the files.
    let _dir_lock = match &settings.storage {
        Storage::Sqlite(dir) => Some(backup::lock_data_dir(dir)?),
        Storage::Postgres(_) => None,
    };
    let backup_key = match settings.backups.as_ref().and_then(|b| b.key_file.as_ref()) {
        Some(path) => Some(backup::load_key(path)?),
        None => None,
    };
    let store = open_store(&settings.storage)?;
    store.declare_sole_server();
    init_org(&store, false).await?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ])
        .context("invalid metric buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("tessera_writer_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )
        .context("invalid metric buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let redis = match &settings.limits.redis_url {
        Some(url) => {
            let r = tessera_api::limits::RedisLimiter::new(url).map_err(|e| anyhow::anyhow!(e))?;
            r.warm_up().await;
            Some(r)
        }
        None => None,
    };
    let failure = if settings.limits.redis_fail_closed {
        tessera_api::limits::RedisFailure::Closed
    } else {
        tessera_api::limits::RedisFailure::Open
    };
    let limiter = std::sync::Arc::new(tessera_api::limits::Limiter::new(redis, failure, settings.limits.max_in_flight));
    // The recorder keeps every histogram sample until upkeep drains it into the buckets,
    // and with install_recorder nothing does that but a scrape: a node nobody scraped grew
    // by about 1 MB per 10,000 requests (the soak benchmark's flood showed the slope).
    let upkeep_handle = metrics.clone();
    let metrics_upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep_handle.run_upkeep();
        }
    });
    let state = AppState {
        store: store.clone(),
        metrics: Some(metrics),
        limiter: limiter.clone(),
        trust_forwarded_for: settings.limits.trust_forwarded_for,
        allow_private_webhook_targets: settings.events.webhook_allow_private_targets,
        public_url: settings.public_url.clone(),
    };
    let housekeeping_limiter = limiter.clone();
    let limiter_housekeeping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            housekeeping_limiter.housekeeping();
        }
    });

    let resumed = store.resume_async_actions_at_start().await.context("cannot resume async actions")?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed unfinished async actions");
    }
    // Housekeeping: resume async actions a stopped node left behind (each is claimed
    // atomically, so several nodes never run one twice), and drop expired records.
    let house_store = store.clone();
    let purger = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            match house_store.sweep_async_actions().await {
                Ok(n) if n > 0 => tracing::info!(resumed = n, "resumed unfinished async actions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "async action sweep failed"),
            }
            if let Err(e) = house_store.idempotency_purge_expired().await {
                tracing::warn!(error = %e, "idempotency purge failed");
            }
            if let Err(e) = house_store.purge_expired_sessions().await {
                tracing::warn!(error = %e, "session purge failed");
            }
            let cutoff = tessera_domain::time::format(
                tessera_domain::time::now()
                    .checked_sub(jiff::SignedDuration::from_hours(24 * WEBHOOK_LOG_DAYS))
                    .unwrap_or_else(|_| tessera_domain::time::now()),
            );
            // Up to 20,000 per round (in short transactions), well above any sustained
            // delivery rate, so the log cannot outgrow its retention.
            for _ in 0..20 {
                match house_store.purge_webhook_log(cutoff.clone(), 1000).await {
                    Ok(1000) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook log purge failed");
                        break;
                    }
                }
            }
        }
    });

    let checker = settings
        .check_interval
        .map(|every| tokio::spawn(run_checks(settings.storage.clone(), every)));
    let event_tasks = events::start(store.clone(), settings.events.clone()).await?;
    let backups = match (&settings.storage, settings.backups.clone()) {
        (Storage::Sqlite(dir), Some(b)) => Some(tokio::spawn(run_backups(dir.clone(), b, backup_key))),
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr().context("cannot read the listening address")?;
    tracing::info!(%addr, engine = store.engine_name(), "tessera listening");
    // A stable line on stdout for scripts and tests that start the server on port 0.
    println!("tessera listening on http://{addr}");
    serve_http(listener, tessera_api::router(state), settings.limits.max_connections).await;
    purger.abort();
    limiter_housekeeping.abort();
    metrics_upkeep.abort();
    if let Some(c) = checker {
        c.abort();
    }
    if let Some(b) = backups {
        b.abort();
    }
    for t in event_tasks {
        t.abort();
    }
    tracing::info!("draining the writer");
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .context("writer shutdown failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Days a finished webhook delivery and its attempts stay listed.
const WEBHOOK_LOG_DAYS: i64 = 30;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request line plus headers (larger: 431).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Accepts HTTP/1.1 connections with the protections axum::serve does not expose: a
/// header read timeout (slow clients), a header size bound, and a cap on open connections.
/// On SIGTERM/SIGINT it stops accepting and lets in-flight requests finish.
async fn serve_http(listener: tokio::net::TcpListener, router: axum::Router, max_connections: usize) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    metrics::counter!("tessera_shed_total", "reason" => "connections").increment(1);
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let svc = router.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    req
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .max_header_size(MAX_HEADER_BYTES)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

async fn project_create(storage: Storage, name: String, timezone: Option<String>, currency: Option<String>, json: bool) -> Result<()> {
    let store = open_store(&storage)?;
    init_org(&store, json).await?;
    let input = ProjectInput {
        name: Some(name),
        timezone,
        currency,
        ..Default::default()
    };
    let created = store
        .create_project(&Management::local_operator(), input)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if json {
        let view = tessera_api::routes::management::view(created.project, Some((&created.server_key, &created.client_key)));
        println!("{}", serde_json::to_string_pretty(&view).context("cannot print the project")?);
    } else {
        println!("Created project {} ({})", created.project.name, created.project.id);
        println!(
            "Server-side key (X-App-Id / X-App-Token): {} {}",
            created.server_key.key.app_id, created.server_key.app_token
        );
        println!(
            "Client-side key (X-Client-Application-Id / X-Client-Token): {} {}",
            created.client_key.key.app_id, created.client_key.app_token
        );
        println!("The tokens are shown only now.");
    }
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .context("writer shutdown failed")?;
    Ok(())
}
