//! The event side of `serve`: relays that read the outbox in commit order and hand events
//! to consumers (webhook fan-out, the statistics read model, NATS JetStream), and the
//! webhook sender. None of it runs on the request path: a redemption commits its event
//! row and returns; everything here follows asynchronously.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tessera_store::ops::events::{AttemptResult, Decided, Due, Event, Room};
use tessera_store::Store;
use tokio::sync::Semaphore;

/// Event settings, from flags, environment and config file.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub webhook_allow_private_targets: bool,
    pub webhook_timeout: Duration,
    pub webhook_max_attempts: u32,
    pub webhook_retry_base: Duration,
    pub nats: Option<NatsSettings>,
}

#[derive(Debug, Clone)]
pub struct NatsSettings {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

/// Events a relay reads per round.
const BATCH: i64 = 500;
/// How long a relay sleeps when it found nothing new.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// Deliveries in flight on this node, per project and per webhook. A receiver that never
/// answers holds at most `PER_WEBHOOK` slots until its timeouts, and one tenant's
/// receivers together at most `PER_PROJECT`, so it takes eight tenants with dead
/// receivers to fill a node, never one.
const IN_FLIGHT: usize = 1024;
const PER_PROJECT: usize = 128;
const PER_WEBHOOK: usize = 64;
/// The webhook loop's rounds (each an outbox read, a look for due deliveries and, with
/// new events, one fan-out write) are at least this far apart, so each write carries a
/// batch and checkout keeps the writer.
const ROUND_SPACING: Duration = Duration::from_millis(5);
/// Attempts recorded per transaction, at most.
const RECORD_BATCH: usize = 500;
/// The start of a receiver's answer kept in the delivery log.
const RESPONSE_KEPT: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn age_secs(stored: &str) -> f64 {
    tessera_domain::time::parse_lenient(stored)
        .map(|t| (now_secs() - t.as_millisecond() as f64 / 1000.0).max(0.0))
        .unwrap_or(0.0)
}

/// Starts every relay and the webhook sender; returns their tasks for shutdown.
pub async fn start(store: Store, settings: EventSettings) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    let s = store.clone();
    tasks.push(tokio::spawn(relay(store.clone(), "stats", move |from, events| {
        let s = s.clone();
        async move { s.apply_stats("stats", from, events).await.map(|_| ()) }
    })));
    if let Some(n) = settings.nats.clone() {
        // Checkout never depends on NATS: the server starts and serves while NATS is
        // unreachable, and this task keeps trying; events wait in the outbox meanwhile.
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            let js = loop {
                match nats_connect(&n).await {
                    Ok(js) => break js,
                    Err(e) => {
                        metrics::gauge!("tessera_nats_connected").set(0.0);
                        tracing::error!(error = %format!("{e:#}"), retry_in_secs = wait.as_secs(), "NATS unavailable; events will be published once it is back");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(30));
                    }
                }
            };
            metrics::gauge!("tessera_nats_connected").set(1.0);
            let js = Arc::new(js);
            let s = store.clone();
            relay(store, "nats", move |from, events| {
                let (s, js, n) = (s.clone(), js.clone(), n.clone());
                async move { nats_publish(&s, &js, &n, from, events).await }
            })
            .await
        }));
    }
    tasks.push(tokio::spawn(send_webhooks(store, settings)));
    Ok(tasks)
}

/// Reads the outbox after the consumer's cursor and hands each batch to `apply`, which
/// must advance the cursor (with a compare-and-set) once the batch is done.
async fn relay<F, Fut>(store: Store, consumer: &'static str, apply: F)
where
    F: Fn(String, Vec<Event>) -> Fut,
    Fut: std::future::Future<Output = tessera_store::Result<()>>,
{
    loop {
        match store.outbox_batch(consumer, BATCH).await {
            Ok((from, events)) => {
                let lag = events.first().map(|e| age_secs(&e.created_at)).unwrap_or(0.0);
                metrics::gauge!("tessera_outbox_lag_seconds", "consumer" => consumer).set(lag);
                if events.is_empty() {
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                let n = events.len();
                match apply(from, events).await {
                    Ok(()) => {
                        metrics::counter!("tessera_outbox_events_total", "consumer" => consumer).increment(n as u64);
                    }
                    // Another node's relay moved the cursor first: read again.
                    Err(tessera_store::StoreError::Conflict { .. }) => {}
                    Err(e) => {
                        metrics::counter!("tessera_outbox_errors_total", "consumer" => consumer).increment(1);
                        tracing::warn!(consumer, error = %e, "event relay failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if n < BATCH as usize {
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
            Err(e) => {
                metrics::counter!("tessera_outbox_errors_total", "consumer" => consumer).increment(1);
                tracing::warn!(consumer, error = %e, "event relay cannot read the outbox; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A URL fit for a log line: user and password removed.
fn without_credentials(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

async fn nats_connect(n: &NatsSettings) -> anyhow::Result<async_nats::jetstream::Context> {
    use anyhow::Context as _;
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&n.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", without_credentials(&n.url)))?;
    let js = async_nats::jetstream::new(client);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: n.stream.clone(),
        subjects: vec![format!("{}.>", n.subject_prefix)],
        // Republishing after a crash (the cursor advances after the acks) is dropped by
        // JetStream if it comes within this window, by `Nats-Msg-Id`.
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("cannot create or open the JetStream stream {}: {e}", n.stream))?;
    Ok(js)
}

/// Publishes a batch to JetStream, each message with `Nats-Msg-Id` set to the event id,
/// waits for every acknowledgement, then advances the cursor.
async fn nats_publish(
    store: &Store,
    js: &async_nats::jetstream::Context,
    n: &NatsSettings,
    from: String,
    events: Vec<Event>,
) -> tessera_store::Result<()> {
    let unavailable = |e: String| {
        metrics::counter!("tessera_nats_publish_errors_total").increment(1);
        tessera_store::StoreError::Unavailable(format!("NATS: {e}"))
    };
    let Some(to) = events.last().map(|e| e.position.clone()) else {
        return Ok(());
    };
    let mut acks = Vec::with_capacity(events.len());
    for e in &events {
        let body = serde_json::json!({
            "id": e.id, "object": "event", "type": e.event_type, "project_id": e.project_id,
            "created_at": e.created_at, "entity_id": e.resource_id,
            "data": serde_json::from_str::<serde_json::Value>(&e.payload).unwrap_or(serde_json::Value::Null),
        });
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.id.as_str());
        let subject = format!("{}.{}.{}", n.subject_prefix, e.project_id, e.event_type);
        match js.publish_with_headers(subject, headers, body.to_string().into()).await {
            Ok(ack) => acks.push(ack),
            // An event larger than the server accepts would block the stream's consumer
            // for good; it is skipped, loudly, and stays in the outbox and webhooks.
            Err(err) if err.kind() == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                metrics::counter!("tessera_nats_skipped_total").increment(1);
                tracing::error!(event = %e.id, event_type = %e.event_type, "event larger than the NATS server's max_payload; not published");
            }
            Err(err) => return Err(unavailable(err.to_string())),
        }
    }
    for ack in acks {
        ack.await.map_err(|err| unavailable(err.to_string()))?;
    }
    store.outbox_advance("nats", from, to).await
}

/// Resolves webhook hosts and keeps only addresses deliveries may reach, so a name that
/// is re-pointed at an internal address after the webhook was accepted gets nowhere.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow || tessera_domain::net::is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The delay before attempt `attempt + 1`: exponential from `base`, with jitter of
/// ±50% so retries of many deliveries spread out, capped at an hour.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    let jitter = 0.5 + rand::random::<f64>();
    exp.mul_f64(jitter).min(MAX_BACKOFF)
}

fn later(d: Duration) -> String {
    let ts = tessera_domain::time::now()
        .checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::from_secs(1)))
        .unwrap_or_else(|_| tessera_domain::time::now());
    tessera_domain::time::format(ts)
}

// Claimed deliveries may wait on this node for a free slot, beyond those in flight,
// per webhook, project and node. Without the lines every freed slot waited for the
// loop's next claim, a write queued behind the checkout's: at a few thousand events a
// second the rounds, not the receiver, set the pace, and lag grew while the machine sat
// half idle. Waiting costs memory only: in-flight caps are unchanged.
/// A webhook's line holds a whole fan-out batch, so that a busy webhook's new events go
/// straight from the fan-out to the line without a second write to claim them.
const WAITING_PER_WEBHOOK: usize = BATCH as usize;
const WAITING_PER_PROJECT: usize = BATCH as usize;
const WAITING: usize = 4 * BATCH as usize;
/// Deliveries a sender takes from its line before it gives its slots back. Without a
/// bound, senders of webhooks whose lines never empty would keep their project's and the
/// node's slots for good, and another webhook with deliveries waiting would get none.
const IN_A_ROW: usize = 16;
/// A waiting delivery starts only if its attempt can end this long before its lease runs
/// out; later, it is left to the lease, so that no other claim can send it meanwhile.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// One webhook's in-flight slots and its claimed deliveries waiting for one, each with
/// the time it was claimed.
#[derive(Clone)]
struct Hook {
    project_id: Arc<str>,
    slots: Arc<Semaphore>,
    waiting: Arc<std::sync::Mutex<std::collections::VecDeque<(Due, std::time::Instant)>>>,
}

impl Hook {
    fn waiting(&self) -> usize {
        self.waiting.lock().map(|w| w.len()).unwrap_or(0)
    }

    fn wait(&self, d: Due) {
        if let Ok(mut w) = self.waiting.lock() {
            w.push_back((d, std::time::Instant::now()));
        }
    }

    /// The next waiting delivery that can still finish inside its lease; those that
    /// cannot are dropped here and sent again once their lease runs out.
    fn next(&self, lease: Duration, timeout: Duration) -> Option<Due> {
        let mut waiting = self.waiting.lock().ok()?;
        while let Some((d, claimed)) = waiting.pop_front() {
            if claimed.elapsed() + timeout + LEASE_MARGIN < lease {
                return Some(d);
            }
            metrics::counter!("tessera_webhook_lease_expired_total").increment(1);
        }
        None
    }
}

/// This node's delivery slots: the in-flight caps, per node, project and webhook, and
/// the deliveries claimed and waiting for them.
struct Slots {
    global: Arc<Semaphore>,
    per_hook: HashMap<String, Hook>,
    per_project: HashMap<String, Arc<Semaphore>>,
}

impl Slots {
    fn hook(&mut self, project_id: &str, id: &str) -> Hook {
        self.per_hook
            .entry(id.to_string())
            .or_insert_with(|| Hook {
                project_id: project_id.into(),
                slots: Arc::new(Semaphore::new(PER_WEBHOOK)),
                waiting: Arc::default(),
            })
            .clone()
    }

    fn project(&mut self, id: &str) -> Arc<Semaphore> {
        self.per_project
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_PROJECT)))
            .clone()
    }

    /// Free slots plus free waiting places: how many deliveries the node, each project
    /// and each webhook may take on now.
    fn room(&self, lease_secs: i64) -> Room {
        let mut project_waiting: HashMap<&str, usize> = HashMap::new();
        let mut waiting = 0;
        let mut webhooks = HashMap::new();
        for (id, h) in &self.per_hook {
            let n = h.waiting();
            waiting += n;
            *project_waiting.entry(&h.project_id).or_default() += n;
            webhooks.insert(id.clone(), h.slots.available_permits() + WAITING_PER_WEBHOOK.saturating_sub(n));
        }
        // A project with deliveries waiting but none in flight has no semaphore yet: all
        // its slots are free, and its waiting ones still count.
        let mut projects: HashMap<String, usize> = project_waiting
            .iter()
            .map(|(k, n)| (k.to_string(), PER_PROJECT + WAITING_PER_PROJECT.saturating_sub(*n)))
            .collect();
        for (k, s) in &self.per_project {
            let n = project_waiting.get(k.as_str()).copied().unwrap_or(0);
            projects.insert(k.clone(), s.available_permits() + WAITING_PER_PROJECT.saturating_sub(n));
        }
        Room {
            total: self.global.available_permits() + WAITING.saturating_sub(waiting),
            projects,
            webhooks,
            project_default: PER_PROJECT + WAITING_PER_PROJECT,
            webhook_default: PER_WEBHOOK + WAITING_PER_WEBHOOK,
            lease_secs,
        }
    }

    /// For each webhook with deliveries waiting in the table, how many to claim: no more
    /// than it, its project and the node have room for.
    fn quota(&mut self, hooks: Vec<(String, String)>, lease_secs: i64) -> Vec<(String, String, i64)> {
        let room = self.room(lease_secs);
        let mut left = room.total;
        let mut quota = Vec::new();
        // A different order each round: the first webhooks listed must not take the free
        // room every time while others wait.
        let mut hooks = hooks;
        {
            use rand::seq::SliceRandom;
            hooks.shuffle(&mut rand::rng());
        }
        let mut project_left: HashMap<String, usize> = HashMap::new();
        for (project_id, webhook_id) in hooks {
            if left == 0 {
                break;
            }
            let project_room = project_left
                .entry(project_id.clone())
                .or_insert_with(|| room.projects.get(&project_id).copied().unwrap_or(room.project_default));
            let hook_room = room.webhooks.get(&webhook_id).copied().unwrap_or(room.webhook_default);
            let n = hook_room.min(left).min(*project_room);
            if n > 0 {
                *project_room -= n;
                quota.push((project_id, webhook_id, n as i64));
                left -= n;
            }
        }
        quota
    }

    /// Takes a delivery's three slots, if all are free.
    fn take(&mut self, hook: &Hook) -> Option<[tokio::sync::OwnedSemaphorePermit; 3]> {
        let project = self.project(&hook.project_id);
        let global = self.global.clone().try_acquire_owned().ok()?;
        let project = project.try_acquire_owned().ok()?;
        let own = hook.slots.clone().try_acquire_owned().ok()?;
        Some([global, project, own])
    }

    /// Forgets the slots of webhooks and projects with nothing in flight or waiting.
    fn forget_idle(&mut self) {
        self.per_hook
            .retain(|_, h| h.slots.available_permits() < PER_WEBHOOK || h.waiting() > 0);
        let busy: std::collections::HashSet<Arc<str>> = self.per_hook.values().map(|h| h.project_id.clone()).collect();
        self.per_project
            .retain(|k, s| s.available_permits() < PER_PROJECT || busy.contains(k.as_str()));
    }
}

/// The webhook side, in one loop so that one owner hands out delivery slots. Each round:
/// new events are fanned out into deliveries, and those with room are claimed in the
/// same write and sent at once; then deliveries waiting in the table (retries come due,
/// replays, claims of a stopped node, deliveries there was no room for) are claimed and
/// sent. On SQLite a round starts as soon as a commit may have added events.
async fn send_webhooks(store: Store, settings: EventSettings) {
    let client = match reqwest::Client::builder()
        .timeout(settings.webhook_timeout)
        .connect_timeout(settings.webhook_timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve targets itself, past the guarded resolver.
        .no_proxy()
        .user_agent(concat!("Tessera-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: settings.webhook_allow_private_targets,
        }))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks are not delivered");
            return;
        }
    };
    let mut slots = Slots {
        global: Arc::new(Semaphore::new(IN_FLIGHT)),
        per_hook: HashMap::new(),
        per_project: HashMap::new(),
    };
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Finished>(IN_FLIGHT * 4);
    tokio::spawn(record_finished(store.clone(), done_rx));
    // A finished delivery frees room: look for more work at once.
    let freed = Arc::new(tokio::sync::Notify::new());
    let mut commits = store.commits();
    // A claim must outlast the attempt it was made for; a crash leaves it to run out.
    let lease = settings.webhook_timeout.as_secs() as i64 + 30;
    let lease_time = Duration::from_secs(lease as u64);
    // Claimed deliveries join their webhook's waiting line; whoever holds free slots
    // takes them from there. A sender keeps its slots and takes the next waiting delivery
    // when it finishes, so a freed slot does not wait for the loop.
    let pump = |slots: &mut Slots| {
        let mut hooks: Vec<Hook> = slots.per_hook.values().filter(|h| h.waiting() > 0).cloned().collect();
        {
            // Freed project and node slots go to the waiting webhooks in a new order each
            // time, so no webhook is always served first.
            use rand::seq::SliceRandom;
            hooks.shuffle(&mut rand::rng());
        }
        for hook in hooks {
            while hook.waiting() > 0 {
                let Some(held) = slots.take(&hook) else { break };
                let Some(first) = hook.next(lease_time, settings.webhook_timeout) else {
                    break;
                };
                let (client, settings, done, freed, hook) =
                    (client.clone(), settings.clone(), done_tx.clone(), freed.clone(), hook.clone());
                tokio::spawn(async move {
                    let mut d = Some(first);
                    let mut served = 0;
                    while let Some(due) = d {
                        let finished = deliver(&client, &settings, due).await;
                        let _ = done.send(finished).await;
                        served += 1;
                        d = if served < IN_A_ROW {
                            hook.next(lease_time, settings.webhook_timeout)
                        } else {
                            None
                        };
                    }
                    drop(held);
                    freed.notify_one();
                });
            }
        }
    };
    let wait = |slots: &mut Slots, d: Due| {
        let hook = slots.hook(&d.project_id, &d.webhook_id);
        hook.wait(d);
    };
    // The sole server of its database sends new events' deliveries as soon as it has
    // read them and queued their fan-out, and reads on while that fan-out waits for the
    // writer (see `sole_server_fan_out`): `read_to` is how far it has read, ahead of the
    // stored cursor, and `fan_outs` the fan-outs queued, oldest first.
    let sole = store.is_sole_server();
    let mut read_to: Option<String> = None;
    let mut fan_outs: std::collections::VecDeque<tokio::task::JoinHandle<tessera_store::Result<usize>>> = std::collections::VecDeque::new();
    loop {
        let round = tokio::time::Instant::now();
        let mut busy = false;
        if sole {
            // A fan-out that failed left the cursor where it was, and each one queued
            // after it fails its compare-and-set: once they are all done, read again
            // from the stored cursor (what was sent is sent again: at least once).
            let mut failed = false;
            while fan_outs.front().is_some_and(|h| h.is_finished()) || fan_outs.len() >= MAX_FAN_OUTS_QUEUED {
                let Some(h) = fan_outs.pop_front() else { break };
                failed |= !matches!(h.await, Ok(Ok(_)));
            }
            if failed {
                for h in fan_outs.drain(..) {
                    let _ = h.await;
                }
                read_to = None;
                metrics::counter!("tessera_outbox_errors_total", "consumer" => "webhooks").increment(1);
                tracing::warn!("webhook fan-out failed; reading from the stored cursor again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // New events: after the stored cursor, or, on the sole server, after what it
        // read last.
        let read = match read_to.clone() {
            Some(p) => store.outbox_after(p.clone(), BATCH).await.map(|events| (p, events)),
            None if sole => store.outbox_batch("webhooks", BATCH).await,
            None => store.outbox_heads("webhooks", BATCH).await,
        };
        match read {
            Ok((from, events)) => {
                let lag = events.first().map(|e| age_secs(&e.created_at)).unwrap_or(0.0);
                metrics::gauge!("tessera_outbox_lag_seconds", "consumer" => "webhooks").set(lag);
                let n = events.len();
                if n > 0 {
                    busy = n == BATCH as usize;
                    let made = if sole {
                        sole_server_fan_out(&store, slots.room(lease), lease, from, events)
                            .await
                            .map(|(due, fan_out, to)| {
                                fan_outs.push_back(tokio::spawn(fan_out));
                                read_to = Some(to);
                                due
                            })
                    } else {
                        store
                            .fan_out_webhooks("webhooks", from, events, slots.room(lease))
                            .await
                            .map(|made| made.claimed)
                    };
                    match made {
                        Ok(due) => {
                            metrics::counter!("tessera_outbox_events_total", "consumer" => "webhooks").increment(n as u64);
                            // What had no room waits in the table for the claim step
                            // below, this round or when slots free up.
                            for d in due {
                                wait(&mut slots, d);
                            }
                            pump(&mut slots);
                        }
                        // Another node's relay moved the cursor first: read again.
                        Err(tessera_store::StoreError::Conflict { .. }) => busy = true,
                        Err(e) => {
                            metrics::counter!("tessera_outbox_errors_total", "consumer" => "webhooks").increment(1);
                            tracing::warn!(error = %e, "webhook fan-out failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
            Err(e) => {
                metrics::counter!("tessera_outbox_errors_total", "consumer" => "webhooks").increment(1);
                tracing::warn!(error = %e, "the webhook relay cannot read the outbox; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        // Deliveries waiting in the table.
        pump(&mut slots);
        if slots.room(lease).total > 0 {
            match store.due_webhooks().await {
                Ok(hooks) if !hooks.is_empty() => {
                    let quota = slots.quota(hooks, lease);
                    if !quota.is_empty() {
                        match store.claim_deliveries(quota, lease).await {
                            Ok(due) => {
                                for d in due {
                                    wait(&mut slots, d);
                                }
                                pump(&mut slots);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for webhook deliveries; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if !busy {
            slots.forget_idle();
            // Wake on a commit (new events, perhaps), a freed slot, or the poll that
            // finds retries come due and other nodes' events.
            let committed = async {
                match commits.as_mut() {
                    Some(rx) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = committed => {}
                _ = freed.notified() => {}
            }
        }
        tokio::time::sleep_until(round + ROUND_SPACING).await;
    }
}

/// Fan-outs a sole server may have queued and not seen commit before it stops reading
/// on: a bound on what a failure makes it send again.
const MAX_FAN_OUTS_QUEUED: usize = 4;

/// What makes a sole server's webhooks fast: new events' deliveries are decided (those
/// with room), their bodies built, and their fan-out queued in the writer right after
/// the relay reads the events; the caller sends them at once, while the fan-out waits
/// its turn. A multi-node relay must wait for its fan-out's commit before sending, or
/// two nodes racing for the same events would both send them; one process alone under
/// the database's lock cannot race, and the writer runs its queue in order, so the
/// attempts recorded later (queued after the fan-out) find their deliveries made.
///
/// Returns the deliveries to send, the fan-out to await, and the position read to.
async fn sole_server_fan_out(
    store: &Store,
    mut room: Room,
    lease: i64,
    from: String,
    mut events: Vec<Event>,
) -> tessera_store::Result<(Vec<Due>, impl std::future::Future<Output = tessera_store::Result<usize>>, String)> {
    use tessera_store::ops::events::{lease_end, receives, webhook_body};
    let to = events.last().map(|e| e.position.clone()).unwrap_or_else(|| from.clone());
    let mut projects: Vec<String> = events.iter().map(|e| e.project_id.clone()).collect();
    projects.sort();
    projects.dedup();
    let hooks = store.active_webhooks(projects).await?;
    let now = tessera_domain::time::now_string();
    let until = lease_end(lease)?;
    let (mut due, mut decided) = (Vec::new(), Vec::new());
    for e in &events {
        for w in hooks.get(&e.project_id).into_iter().flatten().filter(|w| receives(w, e)) {
            if !room.take(&e.project_id, &w.id) {
                continue;
            }
            let id = tessera_domain::ids::new_id("whs");
            let body = webhook_body(&id, &now, w, e)?;
            decided.push(Decided {
                event_id: e.id.clone(),
                webhook_id: w.id.clone(),
                id: id.clone(),
                created_at: now.clone(),
                target_url: w.target_url.clone(),
                lease_until: until.clone(),
            });
            due.push(Due {
                project_id: e.project_id.clone(),
                id,
                webhook_id: w.id.clone(),
                event_id: e.id.clone(),
                body,
                attempts: 0,
                target_url: w.target_url.clone(),
                secret: w.secret.clone(),
                lease_until: until.clone(),
            });
        }
    }
    // The bodies are built: the fan-out needs no payloads.
    for e in &mut events {
        e.payload = String::new();
    }
    let fan_out = store.submit_fan_out_decided("webhooks", from, events, decided).await?;
    Ok((due, fan_out, to))
}

type Finished = (Due, AttemptResult, bool, Option<String>);

/// Writes finished attempts in batches: whatever has arrived since the last write goes
/// in one transaction.
async fn record_finished(store: Store, mut rx: tokio::sync::mpsc::Receiver<Finished>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        if let Err(e) = store.record_attempts(batch).await {
            // The leases run out and another round sends them again: at least once.
            tracing::warn!(error = %e, "cannot record webhook attempts");
        }
    }
}

async fn deliver(client: &reqwest::Client, settings: &EventSettings, d: Due) -> Finished {
    let started_at = tessera_domain::time::now_string();
    let timestamp = now_secs() as i64;
    let clock = std::time::Instant::now();
    let outcome = send(client, settings, &d, timestamp).await;
    let duration_ms = clock.elapsed().as_millis() as i64;
    let (ok, result) = match outcome {
        Ok((status, response)) => (
            (200..300).contains(&status),
            AttemptResult {
                started_at,
                duration_ms,
                status_code: Some(status),
                error: None,
                response: Some(response),
            },
        ),
        Err(e) => (
            false,
            AttemptResult {
                started_at,
                duration_ms,
                status_code: None,
                error: Some(e),
                response: None,
            },
        ),
    };
    let attempt = d.attempts as u32 + 1;
    let retry_at = (!ok && attempt < settings.webhook_max_attempts).then(|| later(backoff(settings.webhook_retry_base, attempt)));
    let outcome_label = if ok {
        "succeeded"
    } else if retry_at.is_some() {
        "retry"
    } else {
        "dead"
    };
    metrics::counter!("tessera_webhook_attempts_total", "outcome" => outcome_label).increment(1);
    metrics::histogram!("tessera_webhook_attempt_seconds").record(duration_ms as f64 / 1000.0);
    if !ok && retry_at.is_none() {
        tracing::warn!(delivery = %d.id, webhook = %d.webhook_id, attempts = attempt, "webhook delivery dead-lettered");
    }
    (d, result, ok, retry_at)
}

/// One POST with the signatures; returns the status and the start of the answer.
async fn send(client: &reqwest::Client, settings: &EventSettings, d: &Due, timestamp: i64) -> Result<(u16, String), String> {
    let url = url::Url::parse(&d.target_url).map_err(|e| format!("bad target URL: {e}"))?;
    // Literal addresses skip the resolver, so they are checked here.
    if let Some(host) = url.host_str() {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            if !settings.webhook_allow_private_targets && !tessera_domain::net::is_public(ip) {
                return Err(format!("refused: {ip} is not a public address"));
            }
        }
    }
    let body = d.body.as_bytes();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "x-voucherify-signature",
            tessera_domain::webhook::voucherify_signature(&d.secret, body),
        );
    if let Some(sig) = tessera_domain::webhook::standard_signature(&d.secret, &d.id, timestamp, body) {
        req = req.header("webhook-signature", sig);
    }
    let resp = req
        .body(d.body.clone())
        .send()
        .await
        .map_err(|e| if e.is_timeout() { "timed out".to_string() } else { format!("{e}") })?;
    let status = resp.status().as_u16();
    // Only the start of the answer is kept, and only that much is read: a receiver that
    // streams without end costs a delivery slot until the timeout, not memory.
    let mut resp = resp;
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_KEPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_KEPT - kept.len())]),
            _ => break,
        }
    }
    Ok((status, String::from_utf8_lossy(&kept).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(id: &str) -> Due {
        Due {
            project_id: "proj_a".into(),
            id: id.into(),
            webhook_id: "wh_a".into(),
            event_id: format!("evt_{id}"),
            body: "{}".into(),
            attempts: 0,
            target_url: "http://127.0.0.1:9/".into(),
            secret: "s".into(),
            lease_until: String::new(),
        }
    }

    #[test]
    fn waiting_deliveries_take_room_and_stale_ones_are_left_to_their_lease() {
        let mut slots = Slots {
            global: Arc::new(Semaphore::new(IN_FLIGHT)),
            per_hook: HashMap::new(),
            per_project: HashMap::new(),
        };
        let hook = slots.hook("proj_a", "wh_a");
        let fresh = slots.room(40);
        assert_eq!(fresh.webhooks["wh_a"], PER_WEBHOOK + WAITING_PER_WEBHOOK);
        for i in 0..10 {
            hook.wait(due(&i.to_string()));
        }
        // Waiting deliveries count against their project before it has any in flight.
        assert_eq!(slots.room(40).projects["proj_a"], PER_PROJECT + WAITING_PER_PROJECT - 10);
        let held = slots.take(&hook).expect("free slots");
        let room = slots.room(40);
        assert_eq!(room.webhooks["wh_a"], PER_WEBHOOK - 1 + WAITING_PER_WEBHOOK - 10);
        assert_eq!(room.total, IN_FLIGHT - 1 + WAITING - 10);
        // A project's waiting deliveries count against it once its slots are known.
        assert_eq!(room.projects["proj_a"], PER_PROJECT - 1 + WAITING_PER_PROJECT - 10);
        // With a lease long enough the first waiting delivery comes out, in order.
        let next = hook.next(Duration::from_secs(40), Duration::from_secs(10));
        assert_eq!(next.map(|d| d.id), Some("0".to_string()));
        // With no time left inside the lease every waiting one is dropped, not sent.
        assert!(hook.next(Duration::from_secs(10), Duration::from_secs(10)).is_none());
        assert_eq!(hook.waiting(), 0);
        drop(held);
        slots.forget_idle();
        assert!(slots.per_hook.is_empty() && slots.per_project.is_empty());
    }

    #[test]
    fn urls_in_logs_carry_no_credentials() {
        assert_eq!(
            without_credentials("nats://user:secret@nats.internal:4222"),
            "nats://nats.internal:4222"
        );
        assert!(!without_credentials("nats://tok@host:4222").contains("tok"));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let base = Duration::from_secs(2);
        for attempt in 1..30 {
            let d = backoff(base, attempt);
            let exp = base.saturating_mul(1u32 << (attempt - 1).min(20)).min(MAX_BACKOFF);
            assert!(d >= exp.mul_f64(0.5) && d <= MAX_BACKOFF, "attempt {attempt}: {d:?}");
        }
        assert!(backoff(base, 1) <= Duration::from_secs(3));
    }
}
