//! What each scenario sends. Requests are built from their sequence number alone, so any
//! connection can send any request and a run is reproducible.

use crate::load::Failure;
use anyhow::{bail, Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// GET /health/live: the server's ceiling with no storage work.
    Ceiling,
    /// POST /v1/validations of one code (round-robin over the codes file) for a 5-line cart.
    Validate,
    /// POST /v1/redemptions of distinct codes, consumed in order from the codes file.
    Redeem,
    /// POST /v1/redemptions of one code with unlimited quantity, from every connection.
    RedeemHot,
    /// A tenant's flood of one endpoint (validations of the hot code), in equal thirds:
    /// its valid server key, invalid keys, and its client key from a new client IP each
    /// time (X-Forwarded-For; the server must trust it). Non-2xx answers are expected.
    Flood,
    /// POST /v1/qualifications for the 5-line cart (amount varying with the sequence
    /// number) and a customer drawn from `--customers`: every promotion tier is a candidate.
    Qualify,
    /// POST /v1/publications: the next free code of the campaign named by `--hot-code`
    /// to a new customer (source id p-<seq>) each time.
    Publish,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ceiling => "ceiling",
            Scenario::Validate => "validate",
            Scenario::Redeem => "redeem",
            Scenario::RedeemHot => "redeem-hot",
            Scenario::Flood => "flood",
            Scenario::Qualify => "qualify",
            Scenario::Publish => "publish",
        }
    }

    pub fn needs_codes(self) -> bool {
        matches!(self, Scenario::Validate | Scenario::Redeem)
    }
}

/// Where the server is: the socket address to dial, the Host header and a path prefix.
pub struct Target {
    pub addr: String,
    host: HeaderValue,
    prefix: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let uri: Uri = url.parse().with_context(|| format!("--url {url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--url must start with http:// (TLS is not supported; benchmark the server directly)");
        }
        let authority = uri.authority().context("--url has no host")?;
        let addr = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str())?,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    app_id: HeaderValue,
    app_token: HeaderValue,
    codes: Vec<String>,
    hot_code: String,
    customers: u64,
    cart: Value,
    client: Option<(HeaderValue, HeaderValue, HeaderValue)>,
}

impl Plan {
    pub fn new(
        scenario: Scenario,
        target: Target,
        app_id: &str,
        app_token: &str,
        codes: Vec<String>,
        hot_code: String,
        customers: u64,
    ) -> Result<Plan> {
        if scenario != Scenario::Ceiling && (app_id.is_empty() || app_token.is_empty()) {
            bail!("--app-id and --app-token are required for the {} scenario", scenario.name());
        }
        let mut app_token = HeaderValue::from_str(app_token).context("--app-token is not a valid header value")?;
        app_token.set_sensitive(true);
        // A fixed 5-line cart: enough lines that allocation across items does real work.
        let items: Vec<Value> = (1..=5)
            .map(|k| json!({"product_id": format!("p{k}"), "quantity": k % 3 + 1, "price": 1000 * k}))
            .collect();
        Ok(Plan {
            scenario,
            target,
            app_id: HeaderValue::from_str(app_id).context("--app-id is not a valid header value")?,
            app_token,
            codes,
            hot_code,
            customers: customers.max(1),
            cart: json!({ "items": items }),
            client: None,
        })
    }

    /// The client-side key and origin the flood scenario uses for its client requests.
    pub fn with_client(mut self, id: &str, token: &str, origin: &str) -> Result<Plan> {
        self.client = Some((
            HeaderValue::from_str(id).context("--client-id is not a valid header value")?,
            HeaderValue::from_str(token).context("--client-token is not a valid header value")?,
            HeaderValue::from_str(origin).context("--origin is not a valid header value")?,
        ));
        Ok(self)
    }

    /// The request with sequence number `seq` (warm-up requests included).
    pub fn request(&self, seq: u64) -> Result<Request<Full<Bytes>>, Failure> {
        let code = match self.scenario {
            Scenario::Ceiling => None,
            Scenario::Qualify | Scenario::Publish => Some(&self.hot_code),
            Scenario::Validate => self.codes.get(seq as usize % self.codes.len().max(1)),
            Scenario::Redeem => self.codes.get(seq as usize),
            Scenario::RedeemHot | Scenario::Flood => Some(&self.hot_code),
        };
        let (method, path) = match self.scenario {
            Scenario::Ceiling => (Method::GET, "/health/live"),
            Scenario::Validate => (Method::POST, "/v1/validations"),
            Scenario::Redeem | Scenario::RedeemHot => (Method::POST, "/v1/redemptions"),
            Scenario::Flood if seq % 3 == 2 => (Method::POST, "/client/v1/validations"),
            Scenario::Flood => (Method::POST, "/v1/validations"),
            Scenario::Qualify => (Method::POST, "/v1/qualifications"),
            Scenario::Publish => (Method::POST, "/v1/publications"),
        };
        let builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.target.prefix))
            .header(HOST, self.target.host.clone());
        let built = if self.scenario == Scenario::Ceiling {
            builder.body(Full::new(Bytes::new()))
        } else {
            let code = code.ok_or_else(|| Failure::new("codes_exhausted", format!("no code for request {seq}")))?;
            let body = if self.scenario == Scenario::Publish {
                json!({"campaign": {"name": code}, "customer": {"source_id": format!("p-{seq}")}})
            } else if self.scenario == Scenario::Qualify {
                // Items scaled so thresholds pass for some requests and fail for others.
                let mut cart = self.cart.clone();
                if let Some(items) = cart["items"].as_array_mut() {
                    for it in items {
                        it["quantity"] = json!(1 + (seq % 4));
                    }
                }
                json!({"order": cart, "customer": {"source_id": format!("c-{}", seq % self.customers)}, "options": {"limit": 5, "sorting_rule": "BEST_DEAL"}})
            } else {
                json!({
                    "redeemables": [{"object": "voucher", "id": code}],
                    "order": self.cart,
                    "customer": {"source_id": format!("c-{}", seq % self.customers)},
                })
            };
            let builder = builder.header(CONTENT_TYPE, "application/json");
            let builder = match (self.scenario, seq % 3, &self.client) {
                (Scenario::Flood, 1, _) => builder
                    .header("x-app-id", format!("app_invalid{seq:x}"))
                    .header("x-app-token", "not-a-token"),
                (Scenario::Flood, 2, Some((id, token, origin))) => {
                    // A different client address each time, from a spread-out range.
                    let n = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
                    let ip = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
                    builder
                        .header("x-client-application-id", id.clone())
                        .header("x-client-token", token.clone())
                        .header("origin", origin.clone())
                        .header("x-forwarded-for", ip)
                }
                _ => builder
                    .header("x-app-id", self.app_id.clone())
                    .header("x-app-token", self.app_token.clone()),
            };
            builder.body(Full::new(Bytes::from(body.to_string())))
        };
        built.map_err(|e| Failure::new("request", e))
    }

    /// Whether a 2xx answer means what the scenario wanted: a validation can answer 200
    /// with `valid: false`, which must not count as a success.
    pub fn accepts(&self, body: &[u8]) -> bool {
        #[derive(serde::Deserialize)]
        struct Verdict {
            valid: bool,
        }
        match self.scenario {
            Scenario::Validate => serde_json::from_slice::<Verdict>(body).is_ok_and(|v| v.valid),
            _ => true,
        }
    }
}
