//! Independent invariant checker for Tessera databases.
//!
//! It reads a database the engine wrote (SQLite file or PostgreSQL schema) and reports
//! every row that breaks one of the engine's promises: counters that disagree with the
//! redemption log, gift balances that disagree with their ledger, limits exceeded,
//! redemptions without their event, rollbacks that do not match, rows outside any
//! project. It shares no code with the engine on purpose (only the schema), so an engine
//! bug cannot hide itself by computing the same wrong answer twice.
//!
//! Every check runs in one read-only snapshot, so it can run against a live database.
//!
//! ```no_run
//! let report = tessera_check::check_sqlite(std::path::Path::new("data/tessera.db"))?;
//! print!("{}", report.to_text());
//! assert!(report.is_ok());
//! # Ok::<(), String>(())
//! ```

mod checks;
mod db;
mod rules;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use checks::MAX_EXAMPLES;

/// The outcome of one invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub name: &'static str,
    pub description: &'static str,
    /// Rows (or groups of rows) breaking the invariant.
    pub violations: u64,
    /// Up to `MAX_EXAMPLES` of them, as `column=value` pairs.
    pub examples: Vec<String>,
}

impl CheckResult {
    pub fn is_ok(&self) -> bool {
        self.violations == 0
    }
}

/// The outcome of one run of every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<CheckResult>,
    /// When the run finished, in seconds since the Unix epoch.
    pub finished_at: u64,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.checks.iter().all(CheckResult::is_ok)
    }

    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Names of the checks that found violations.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|c| !c.is_ok()).map(|c| c.name).collect()
    }

    /// One line per check: `PASS name 0` or `FAIL name N: example | example ...`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let verdict = if c.is_ok() { "PASS" } else { "FAIL" };
            let _ = write!(out, "{verdict} {} {}", c.name, c.violations);
            if !c.examples.is_empty() {
                // Values come from the database; keep each check on one line whatever they hold.
                let _ = write!(out, ": {}", c.examples.join(" | ").replace(['\n', '\r'], " "));
            }
            out.push('\n');
        }
        out
    }

    /// The Prometheus text exposition format, for a textfile collector or a push.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP tessera_check_violations Rows breaking each invariant at the last run of tessera-check.\n\
             # TYPE tessera_check_violations gauge\n",
        );
        for c in &self.checks {
            let _ = writeln!(
                out,
                "tessera_check_violations{{check=\"{}\"}} {}",
                escape_label(c.name),
                c.violations
            );
        }
        let _ = write!(
            out,
            "# HELP tessera_check_last_run_timestamp_seconds When tessera-check last finished a run.\n\
             # TYPE tessera_check_last_run_timestamp_seconds gauge\n\
             tessera_check_last_run_timestamp_seconds {}\n",
            self.finished_at
        );
        out
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The checks this build runs, as (name, description).
pub fn checks() -> Vec<(&'static str, &'static str)> {
    checks::CHECKS.iter().map(|c| (c.name, c.description)).collect()
}

/// Checks a SQLite database: the `tessera.db` file, or a data directory holding it. The
/// file is opened read-only and never created.
pub fn check_sqlite(path: &Path) -> Result<Report, String> {
    let file = if path.is_dir() {
        path.join("tessera.db")
    } else {
        path.to_path_buf()
    };
    db::with_sqlite(&file, run_all)
}

/// Checks a PostgreSQL database. The URL may select a schema with
/// `options=-c search_path=...` (percent-encoded), as the engine's own URL does.
///
/// This blocks the calling thread until the run ends. The synchronous `postgres` client
/// runs its own tokio runtime and must not be used from a thread that is inside one, so
/// the run happens on a plain thread of its own: calling this from synchronous code or
/// from `tokio::task::spawn_blocking` is fine; from an async task it works but stalls
/// that worker for the duration.
pub fn check_postgres(url: &str) -> Result<Report, String> {
    let url = url.to_string();
    std::thread::Builder::new()
        .name("tessera-check-postgres".into())
        .spawn(move || db::with_postgres(&url, run_all))
        .map_err(|e| format!("cannot start the checker thread: {e}"))?
        .join()
        .map_err(|_| "the PostgreSQL checker thread panicked".to_string())?
}

fn run_all(db: &mut dyn db::Db) -> Result<Report, String> {
    let mut results = Vec::with_capacity(checks::CHECKS.len());
    for check in checks::CHECKS {
        let found = check.run(db).map_err(|e| format!("check {}: {e}", check.name))?;
        results.push(CheckResult {
            name: check.name,
            description: check.description,
            violations: found.violations,
            examples: found.examples,
        });
    }
    let finished_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(Report {
        checks: results,
        finished_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            checks: vec![
                CheckResult {
                    name: "a",
                    description: "",
                    violations: 0,
                    examples: vec![],
                },
                CheckResult {
                    name: "b",
                    description: "",
                    violations: 2,
                    examples: vec!["id=1".into(), "id=2".into()],
                },
            ],
            finished_at: 1700000000,
        }
    }

    #[test]
    fn renders_text_and_prometheus() {
        let r = report();
        assert!(!r.is_ok());
        assert_eq!(r.failed(), vec!["b"]);
        assert_eq!(r.to_text(), "PASS a 0\nFAIL b 2: id=1 | id=2\n");
        let p = r.to_prometheus();
        assert!(p.contains("tessera_check_violations{check=\"a\"} 0\n"));
        assert!(p.contains("tessera_check_violations{check=\"b\"} 2\n"));
        assert!(p.contains("tessera_check_last_run_timestamp_seconds 1700000000\n"));
    }

    #[test]
    fn check_names_are_unique_metric_labels() {
        let names: Vec<_> = checks().into_iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
