//! `tessera-loadgen`: an open-loop HTTP/1.1 load generator for Tessera's benchmarks.
//!
//! It offers a fixed request rate over a fixed pool of keep-alive connections and reports
//! throughput, latency percentiles (HDR histogram, warm-up excluded) and errors, as JSON
//! and as a Markdown table row. See `load.rs` for how latency avoids coordinated omission
//! and `bench/run.sh` for the benchmark that drives it.

mod load;
mod report;
mod scenario;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use load::Settings;
use scenario::{CodeLine, Plan, Scenario, Target};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "tessera-loadgen", version, about = "Open-loop HTTP/1.1 load generator for Tessera")]
struct Cli {
    /// Base URL of the server (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Server-side application id (X-App-Id); every scenario but `ceiling` needs it.
    #[arg(long, env = "TESSERA_APP_ID", default_value = "")]
    app_id: String,
    /// Server-side application token (X-App-Token).
    #[arg(
        long,
        env = "TESSERA_APP_TOKEN",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    app_token: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Offered load in requests (checkout: flows) per second, kept whatever the response
    /// times (open loop).
    #[arg(long)]
    rate: f64,
    /// Measured seconds, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (connections, caches, the database warm up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Keep-alive connections; requests beyond them wait in a queue, and the wait counts.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Most requests queued or in flight; beyond it a request counts as `client_overload`.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Seconds from a request's due time after which it counts as `timeout`.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Codes, one a line, `CODE` or `CODE,CUSTOMER_SOURCE_ID` (the customer the code was
    /// published to, named in its validations and redemptions): validate cycles through
    /// them, redeem and checkout use each once in order.
    #[arg(long)]
    codes_file: Option<PathBuf>,
    /// The code every redeem-hot request redeems (and every flood request validates);
    /// several, comma-separated, are redeemed together in one stacked request.
    #[arg(long)]
    hot_code: Option<String>,
    /// Client-side key id and token, and the Origin, for the flood scenario.
    #[arg(long, env = "TESSERA_CLIENT_ID")]
    client_id: Option<String>,
    #[arg(long, env = "TESSERA_CLIENT_TOKEN", hide_env_values = true)]
    client_token: Option<String>,
    #[arg(long)]
    origin: Option<String>,
    /// Distinct customers (source ids c-0, c-1, ...) the requests rotate through.
    #[arg(long, default_value_t = 1000)]
    customers: u64,
    /// Customer source ids, one a line, to rotate through instead of c-0, c-1, ...
    #[arg(long, conflicts_with = "customers")]
    customers_file: Option<PathBuf>,
    /// Product source ids, comma-separated, one cart line each, instead of the default
    /// 5-line cart of product ids p1 to p5 (which no catalogue holds).
    #[arg(long, value_delimiter = ',')]
    cart_products: Vec<String>,
    /// Write the result as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Label of this run in the outputs [default: the scenario's name].
    #[arg(long)]
    label: Option<String>,
    /// Print the Markdown table header before the row.
    #[arg(long)]
    markdown_header: bool,
    /// Runtime threads of the generator; one leaves the other cores to the server.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(cli.rate.is_finite() && cli.rate > 0.0, "--rate must be above 0");
    ensure!(cli.connections >= 1, "--connections must be at least 1");
    ensure!(cli.max_in_flight > cli.connections, "--max-in-flight must exceed --connections");
    ensure!(cli.threads >= 1, "--threads must be at least 1");
    let settings = Settings {
        rate: cli.rate,
        warmup: seconds("warmup", cli.warmup)?,
        duration: seconds("duration", cli.duration)?,
        connections: cli.connections,
        max_in_flight: cli.max_in_flight,
        timeout: seconds("timeout", cli.timeout)?,
    };
    ensure!(
        !settings.duration.is_zero() && !settings.timeout.is_zero(),
        "--duration and --timeout must be above 0"
    );
    let codes = match (&cli.codes_file, cli.scenario.needs_codes()) {
        (Some(path), true) => read_codes(path)?,
        (None, true) => bail!("the {} scenario needs --codes-file", cli.scenario.name()),
        _ => Vec::new(),
    };
    let (_, total) = settings.counts();
    if cli.scenario.consumes_codes() && (codes.len() as u64) < total {
        bail!(
            "{} uses one code per flow: {total} flows (warm-up included) need {total} codes, the file has {}",
            cli.scenario.name(),
            codes.len()
        );
    }
    let customers = match &cli.customers_file {
        Some(path) => read_lines(path)?,
        None => Vec::new(),
    };
    let products: Vec<String> = cli.cart_products.iter().map(|p| p.trim().to_string()).collect();
    ensure!(
        products.iter().all(|p| !p.is_empty()),
        "--cart-products has an empty product source id"
    );
    let hot_code = match (cli.scenario, &cli.hot_code) {
        (Scenario::RedeemHot | Scenario::Flood, None) => bail!("the {} scenario needs --hot-code", cli.scenario.name()),
        (Scenario::Publish, None) => bail!("the publish scenario needs --hot-code naming the campaign"),
        (_, code) => code.clone().unwrap_or_default(),
    };
    let plan = Plan::new(
        cli.scenario,
        Target::parse(&cli.url)?,
        &cli.app_id,
        &cli.app_token,
        codes,
        hot_code,
        cli.customers,
    )?
    .with_customers(customers);
    let plan = match products.as_slice() {
        [] => plan,
        products => plan.with_products(products),
    };
    let plan = match (cli.scenario, &cli.client_id, &cli.client_token, &cli.origin) {
        (Scenario::Flood, Some(id), Some(token), Some(origin)) => plan.with_client(id, token, origin)?,
        (Scenario::Flood, ..) => bail!("the flood scenario needs --client-id, --client-token and --origin"),
        _ => plan,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let plan = Arc::new(plan);
    let (stats, window_start) = runtime.block_on(async {
        // Fail fast on a wrong address rather than reporting a run of connect errors.
        tokio::net::TcpStream::connect(&plan.target.addr)
            .await
            .with_context(|| format!("cannot connect to {}", plan.target.addr))?;
        load::run(plan.clone(), &settings).await
    })?;

    let name = cli.scenario.name();
    let report = stats.report(
        name,
        cli.label.as_deref().unwrap_or(name),
        cli.rate,
        settings.duration,
        window_start,
    );
    for (kind, detail) in &stats.details {
        eprintln!("{name}: first {kind}: {detail}");
    }
    if let Some(path) = &cli.json_out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if cli.markdown_header {
        println!("{}", report::MARKDOWN_HEADER);
    }
    println!("{}", report.markdown_row());
    Ok(())
}

fn read_codes(path: &PathBuf) -> Result<Vec<CodeLine>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut codes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = CodeLine::parse(line).with_context(|| format!("{} line {}", path.display(), n + 1))?;
        codes.extend(parsed);
    }
    ensure!(!codes.is_empty(), "{} holds no codes", path.display());
    Ok(codes)
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    ensure!(!lines.is_empty(), "{} is empty", path.display());
    Ok(lines)
}
