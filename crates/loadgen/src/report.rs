//! Counting outcomes and writing them out as JSON and as a Markdown table row.

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest error detail kept per kind: enough to see why, never a whole response.
const MAX_DETAIL_CHARS: usize = 300;

/// Outcomes of the measured requests (warm-up excluded). Each worker keeps its own, so
/// recording takes no lock; they are merged at the end.
#[derive(Clone)]
pub struct Stats {
    /// Requests due in the measured window.
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    /// The first detail seen for each error kind, to tell the operator why.
    pub details: BTreeMap<String, String>,
    /// Latency of successful requests, in microseconds from their due time.
    latency_us: Histogram<u64>,
    /// How late the scheduler queued each request. It is part of the latency above; when
    /// it grows, the generator rather than the server is what falls behind.
    lag_us: Histogram<u64>,
    last_done: Option<Instant>,
}

impl Stats {
    pub fn new() -> Result<Stats> {
        Ok(Stats {
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            details: BTreeMap::new(),
            // Auto-resizing, so no latency is ever too large to record.
            latency_us: Histogram::new(3).context("latency histogram")?,
            lag_us: Histogram::new(3).context("lag histogram")?,
            last_done: None,
        })
    }

    pub fn succeed(&mut self, latency: Duration, done: Instant) {
        self.ok += 1;
        record(&mut self.latency_us, latency);
        self.last_done = self.last_done.max(Some(done));
    }

    pub fn scheduled(&mut self, lag: Duration) {
        self.requests += 1;
        record(&mut self.lag_us, lag);
    }

    pub fn fail(&mut self, kind: &str, detail: impl Into<String>) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        if !self.details.contains_key(kind) {
            let detail: String = detail.into().chars().take(MAX_DETAIL_CHARS).collect();
            self.details.insert(kind.to_string(), detail);
        }
    }

    pub fn merge(&mut self, other: Stats) -> Result<()> {
        self.requests += other.requests;
        self.ok += other.ok;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, d) in other.details {
            self.details.entry(kind).or_insert(d);
        }
        self.latency_us.add(&other.latency_us).context("merging latency histograms")?;
        self.lag_us.add(&other.lag_us).context("merging lag histograms")?;
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }

    /// The report of a run whose measured window began at `window_start` and was planned
    /// to last `duration`. Throughput divides successes by the planned window, or by the
    /// time the last success actually took if the server fell behind.
    pub fn report(&self, scenario: &str, label: &str, rate: f64, duration: Duration, window_start: Instant) -> Report {
        let elapsed = self
            .last_done
            .map_or(duration, |t| t.saturating_duration_since(window_start))
            .max(duration);
        let ms = |us: u64| round3(us as f64 / 1000.0);
        let h = &self.latency_us;
        Report {
            scenario: scenario.to_string(),
            label: label.to_string(),
            rate_target: rate,
            achieved_rps: round3(self.ok as f64 / elapsed.as_secs_f64()),
            duration_s: round3(duration.as_secs_f64()),
            requests: self.requests,
            ok: self.ok,
            errors: self.errors.clone(),
            latency_ms: Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
                mean: round3(h.mean() / 1000.0),
            },
            scheduler_lag_ms: Lag {
                p99: ms(self.lag_us.value_at_quantile(0.99)),
                max: ms(self.lag_us.max()),
            },
        }
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = d.as_micros().max(1).try_into().unwrap_or(u64::MAX);
    // The histogram grows to fit, so `record` cannot fail short of u64::MAX; should it
    // ever, the sample still counts, at the largest value the histogram holds.
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: String,
    pub label: String,
    pub rate_target: f64,
    pub achieved_rps: f64,
    pub duration_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Successful requests only, measured from each request's due time.
    pub latency_ms: Latency,
    pub scheduler_lag_ms: Lag,
}

#[derive(Serialize)]
pub struct Lag {
    pub p99: f64,
    pub max: f64,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

pub const MARKDOWN_HEADER: &str =
    "| label | scenario | target rps | achieved rps | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms | ok | errors |\n\
                                   |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|";

impl Report {
    pub fn markdown_row(&self) -> String {
        let errors = if self.errors.is_empty() {
            "0".to_string()
        } else {
            self.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
        };
        let l = &self.latency_ms;
        format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            self.label, self.scenario, self.rate_target, self.achieved_rps, l.p50, l.p95, l.p99, l.p999, l.max, self.ok, errors
        )
    }
}
