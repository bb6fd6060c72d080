//! What each scenario sends. Requests are built from their sequence number alone, so any
//! connection can send any request and a run is reproducible.

use crate::load::Failure;
use anyhow::{bail, ensure, Context, Result};
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
    /// number) and a customer drawn from `--customers` (or `--customers-file`): every
    /// promotion tier is a candidate.
    Qualify,
    /// POST /v1/publications: the next free code of the campaign named by `--hot-code`
    /// to a new customer (source id p-<seq>) each time.
    Publish,
    /// A shop's checkout, one flow per rate unit: qualifications for the cart, then a
    /// validation and a redemption of one code (distinct per flow, in order from the codes
    /// file) for the same cart and customer, back to back on one connection.
    Checkout,
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
            Scenario::Checkout => "checkout",
        }
    }

    pub fn needs_codes(self) -> bool {
        matches!(self, Scenario::Validate | Scenario::Redeem | Scenario::Checkout)
    }

    /// Whether each flow consumes its own code, so a run needs one code per flow.
    pub fn consumes_codes(self) -> bool {
        matches!(self, Scenario::Redeem | Scenario::Checkout)
    }
}

/// One line of a codes file: `CODE`, or `CODE,CUSTOMER_SOURCE_ID` for a code published to
/// a customer, whose validations and redemptions then name that customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeLine {
    pub code: String,
    pub customer: Option<String>,
}

impl CodeLine {
    /// `None` for a blank line. The customer is everything after the first comma, so
    /// codes cannot contain commas but source ids can.
    pub fn parse(line: &str) -> Result<Option<CodeLine>> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        let (code, customer) = match line.split_once(',') {
            Some((code, customer)) => (code.trim(), Some(customer.trim())),
            None => (line, None),
        };
        ensure!(!code.is_empty(), "a line starts with a comma: no code before the customer");
        // A trailing comma is how spreadsheets write an empty customer column.
        let customer = customer.filter(|c| !c.is_empty()).map(str::to_string);
        Ok(Some(CodeLine {
            code: code.to_string(),
            customer,
        }))
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

/// One HTTP exchange as data, before headers are chosen; a flow is a list of them.
#[derive(Debug)]
pub struct Call {
    /// Prefixes the flow's error kinds (`validate_status_400`); empty when the flow is a
    /// single request, so those keep the plain kinds (`status_400`).
    pub step: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub body: Option<Value>,
    /// A validation can answer 200 with `valid: false`, which must not count as a success.
    pub must_be_valid: bool,
}

/// A call ready to send.
pub struct Step {
    pub name: &'static str,
    pub must_be_valid: bool,
    pub request: Request<Full<Bytes>>,
}

pub struct Plan {
    pub scenario: Scenario,
    pub target: Target,
    app_id: HeaderValue,
    app_token: HeaderValue,
    codes: Vec<CodeLine>,
    hot_code: String,
    customers: u64,
    /// Source ids requests rotate through instead of c-0, c-1, ... when given.
    customer_ids: Vec<String>,
    cart: Value,
    client: Option<(HeaderValue, HeaderValue, HeaderValue)>,
}

impl Plan {
    pub fn new(
        scenario: Scenario,
        target: Target,
        app_id: &str,
        app_token: &str,
        codes: Vec<CodeLine>,
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
            customer_ids: Vec::new(),
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

    /// Customers by source id, used where a request's customer comes from its sequence
    /// number (every scenario but publish, unless its code line names the customer).
    pub fn with_customers(mut self, ids: Vec<String>) -> Plan {
        self.customer_ids = ids;
        self
    }

    /// A cart of existing catalogue products, one line each, referenced by source id as a
    /// shop's integration would, instead of the default lines' unknown product ids.
    pub fn with_products(mut self, source_ids: &[String]) -> Plan {
        let items: Vec<Value> = (1..)
            .zip(source_ids)
            .map(|(k, id)| json!({"source_id": id, "related_object": "product", "quantity": k % 3 + 1, "price": 1000 * k}))
            .collect();
        self.cart = json!({ "items": items });
        self
    }

    fn customer(&self, seq: u64) -> String {
        let n = self.customer_ids.len() as u64;
        match self.customer_ids.get(seq.checked_rem(n).unwrap_or(0) as usize) {
            Some(id) => id.clone(),
            None => format!("c-{}", seq % self.customers),
        }
    }

    /// The code line of a flow that consumes its own code.
    fn own_code(&self, seq: u64) -> Result<&CodeLine, Failure> {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.codes.get(i))
            .ok_or_else(|| Failure::new("codes_exhausted", format!("no code for request {seq}")))
    }

    /// The body of a validation or redemption of one code: stackable, as integrations send
    /// it today. A comma-separated list stacks several codes in one request.
    fn redeem_body(&self, codes: &str, customer: &str) -> Value {
        let redeemables: Vec<Value> = codes.split(',').map(|code| json!({"object": "voucher", "id": code})).collect();
        json!({
            "redeemables": redeemables,
            "order": self.cart,
            "customer": {"source_id": customer},
        })
    }

    /// What the flow with sequence number `seq` sends, in order (warm-up flows included).
    pub fn calls(&self, seq: u64) -> Result<Vec<Call>, Failure> {
        let one = |method, path, body, must_be_valid| {
            vec![Call {
                step: "",
                method,
                path,
                body,
                must_be_valid,
            }]
        };
        let calls = match self.scenario {
            Scenario::Ceiling => one(Method::GET, "/health/live", None, false),
            Scenario::Validate => {
                let line = self.codes.get((seq % self.codes.len().max(1) as u64) as usize);
                let line = line.ok_or_else(|| Failure::new("codes_exhausted", "the codes file is empty"))?;
                let customer = line.customer.clone().unwrap_or_else(|| self.customer(seq));
                one(Method::POST, "/v1/validations", Some(self.redeem_body(&line.code, &customer)), true)
            }
            Scenario::Redeem => {
                let line = self.own_code(seq)?;
                let customer = line.customer.clone().unwrap_or_else(|| self.customer(seq));
                one(
                    Method::POST,
                    "/v1/redemptions",
                    Some(self.redeem_body(&line.code, &customer)),
                    false,
                )
            }
            Scenario::RedeemHot => {
                let body = self.redeem_body(&self.hot_code, &self.customer(seq));
                one(Method::POST, "/v1/redemptions", Some(body), false)
            }
            Scenario::Flood => {
                let path = if seq % 3 == 2 {
                    "/client/v1/validations"
                } else {
                    "/v1/validations"
                };
                // Refusals are the point of a flood, so no answer is judged by its body.
                one(
                    Method::POST,
                    path,
                    Some(self.redeem_body(&self.hot_code, &self.customer(seq))),
                    false,
                )
            }
            Scenario::Qualify => {
                // Items scaled so thresholds pass for some requests and fail for others.
                let mut cart = self.cart.clone();
                if let Some(items) = cart["items"].as_array_mut() {
                    for it in items {
                        it["quantity"] = json!(1 + (seq % 4));
                    }
                }
                let body = json!({"order": cart, "customer": {"source_id": self.customer(seq)}, "options": {"limit": 5, "sorting_rule": "BEST_DEAL"}});
                one(Method::POST, "/v1/qualifications", Some(body), false)
            }
            Scenario::Publish => {
                let body = json!({"campaign": {"name": self.hot_code}, "customer": {"source_id": format!("p-{seq}")}});
                one(Method::POST, "/v1/publications", Some(body), false)
            }
            Scenario::Checkout => {
                let line = self.own_code(seq)?;
                let customer = line.customer.clone().unwrap_or_else(|| self.customer(seq));
                let stack = self.redeem_body(&line.code, &customer);
                let qualification = json!({"order": self.cart, "customer": {"source_id": customer}, "options": {"limit": 5}});
                let call = |step, path, body, must_be_valid| Call {
                    step,
                    method: Method::POST,
                    path,
                    body: Some(body),
                    must_be_valid,
                };
                vec![
                    call("qualify", "/v1/qualifications", qualification, false),
                    call("validate", "/v1/validations", stack.clone(), true),
                    call("redeem", "/v1/redemptions", stack, false),
                ]
            }
        };
        Ok(calls)
    }

    /// The flow with sequence number `seq`, ready to send.
    pub fn flow(&self, seq: u64) -> Result<Vec<Step>, Failure> {
        self.calls(seq)?
            .into_iter()
            .map(|call| {
                Ok(Step {
                    name: call.step,
                    must_be_valid: call.must_be_valid,
                    request: self.request(seq, call)?,
                })
            })
            .collect()
    }

    fn request(&self, seq: u64, call: Call) -> Result<Request<Full<Bytes>>, Failure> {
        let builder = Request::builder()
            .method(call.method)
            .uri(format!("{}{}", self.target.prefix, call.path))
            .header(HOST, self.target.host.clone());
        let built = match call.body {
            None => builder.body(Full::new(Bytes::new())),
            Some(body) => {
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
            }
        };
        built.map_err(|e| Failure::new("request", e))
    }
}

/// Whether a validation's answer said the redeemables are valid.
pub fn said_valid(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Verdict {
        valid: bool,
    }
    serde_json::from_slice::<Verdict>(body).is_ok_and(|v| v.valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(code: &str, customer: Option<&str>) -> CodeLine {
        CodeLine {
            code: code.to_string(),
            customer: customer.map(str::to_string),
        }
    }

    fn plan(scenario: Scenario, codes: Vec<CodeLine>) -> Plan {
        let target = Target::parse("http://127.0.0.1:9/base").expect("a valid URL");
        Plan::new(scenario, target, "app", "token", codes, "HOT".to_string(), 10).expect("a valid plan")
    }

    #[test]
    fn code_lines_parse_with_and_without_a_customer() {
        let parse = |s: &str| CodeLine::parse(s).expect("a valid line");
        assert_eq!(parse("ABC"), Some(line("ABC", None)));
        assert_eq!(parse("  ABC \r"), Some(line("ABC", None)));
        assert_eq!(parse("ABC,cust-0000042"), Some(line("ABC", Some("cust-0000042"))));
        assert_eq!(parse(" ABC , cust 42 "), Some(line("ABC", Some("cust 42"))));
        // Only the first comma separates: a source id may hold commas.
        assert_eq!(parse("ABC,a,b"), Some(line("ABC", Some("a,b"))));
        assert_eq!(parse("ABC,"), Some(line("ABC", None)));
        assert_eq!(parse(""), None);
        assert_eq!(parse("   "), None);
        assert!(CodeLine::parse(",cust-1").is_err());
        assert!(CodeLine::parse(" , ").is_err());
    }

    #[test]
    fn checkout_flow_qualifies_validates_and_redeems_one_code_for_one_cart_and_customer() {
        let p = plan(Scenario::Checkout, vec![line("A1", Some("cust-7")), line("B2", None)]);
        let calls = p.calls(0).expect("a flow");
        let steps: Vec<_> = calls.iter().map(|c| (c.step, c.method.clone(), c.path, c.must_be_valid)).collect();
        assert_eq!(
            steps,
            [
                ("qualify", Method::POST, "/v1/qualifications", false),
                ("validate", Method::POST, "/v1/validations", true),
                ("redeem", Method::POST, "/v1/redemptions", false),
            ]
        );
        let bodies: Vec<&Value> = calls.iter().filter_map(|c| c.body.as_ref()).collect();
        let [qualify, validate, redeem] = bodies[..] else {
            panic!("three bodies, got {bodies:?}")
        };
        assert_eq!(qualify["customer"], json!({"source_id": "cust-7"}));
        assert_eq!(qualify["options"], json!({"limit": 5}));
        assert_eq!(qualify["order"]["items"].as_array().map(Vec::len), Some(5));
        assert_eq!(validate["redeemables"], json!([{"object": "voucher", "id": "A1"}]));
        assert_eq!(validate["customer"], json!({"source_id": "cust-7"}));
        assert_eq!(validate["order"], qualify["order"]);
        assert_eq!(redeem, validate);

        // A plain line falls back to the customer of the sequence number.
        let calls = p.calls(1).expect("a flow");
        let redeem = calls[2].body.as_ref().expect("a body");
        assert_eq!(redeem["redeemables"][0]["id"], "B2");
        assert_eq!(redeem["customer"], json!({"source_id": "c-1"}));
        assert_eq!(calls[0].body.as_ref().map(|b| &b["customer"]), Some(&json!({"source_id": "c-1"})));

        // Each flow has its own code; past the file's end a flow fails instead of reusing one.
        let err = p.calls(2).expect_err("no third code");
        assert_eq!(err.kind, "codes_exhausted");
    }

    #[test]
    fn checkout_requests_go_to_the_prefix_with_the_server_key() {
        let p = plan(Scenario::Checkout, vec![line("A1", Some("cust-7"))]);
        let flow = p.flow(0).expect("a flow");
        let uris: Vec<String> = flow.iter().map(|s| s.request.uri().to_string()).collect();
        assert_eq!(uris, ["/base/v1/qualifications", "/base/v1/validations", "/base/v1/redemptions"]);
        for s in &flow {
            assert_eq!(s.request.headers()["x-app-id"], "app");
            assert_eq!(s.request.headers()[CONTENT_TYPE], "application/json");
        }
    }

    #[test]
    fn a_list_of_hot_codes_is_redeemed_as_one_stack() {
        let target = Target::parse("http://127.0.0.1:9/base").expect("a valid URL");
        let p = Plan::new(Scenario::RedeemHot, target, "app", "token", Vec::new(), "H1,H2,H3".to_string(), 10).expect("a valid plan");
        let body = p.calls(4).expect("a call").remove(0).body.expect("a body");
        let ids: Vec<&str> = body["redeemables"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids, ["H1", "H2", "H3"]);
        assert_eq!(
            plan(Scenario::RedeemHot, Vec::new()).calls(0).expect("a call")[0]
                .body
                .as_ref()
                .expect("a body")["redeemables"],
            json!([{"object": "voucher", "id": "HOT"}])
        );
    }

    #[test]
    fn validations_and_redemptions_name_the_customer_a_code_was_published_to() {
        let codes = vec![line("A1", Some("cust-7")), line("B2", None)];
        let body = |p: &Plan, seq| p.calls(seq).expect("a call").remove(0).body.expect("a body");
        let validate = plan(Scenario::Validate, codes.clone());
        assert_eq!(body(&validate, 0)["customer"], json!({"source_id": "cust-7"}));
        assert_eq!(body(&validate, 3)["customer"], json!({"source_id": "c-3"}));
        // Validation cycles through the file.
        assert_eq!(body(&validate, 2)["redeemables"][0]["id"], "A1");
        let redeem = plan(Scenario::Redeem, codes);
        assert_eq!(body(&redeem, 0)["customer"], json!({"source_id": "cust-7"}));
        assert_eq!(body(&redeem, 1)["redeemables"][0]["id"], "B2");
        assert!(redeem.calls(2).is_err());
    }

    #[test]
    fn a_customers_list_and_catalogue_products_replace_the_defaults() {
        let p = plan(Scenario::Qualify, Vec::new())
            .with_customers(vec!["cust-1".to_string(), "cust-2".to_string()])
            .with_products(&["prod-000".to_string(), "prod-001".to_string()]);
        let body = p.calls(3).expect("a call").remove(0).body.expect("a body");
        assert_eq!(body["customer"], json!({"source_id": "cust-2"}));
        assert_eq!(body["order"]["items"][1]["source_id"], "prod-001");
        assert_eq!(body["order"]["items"][1]["related_object"], "product");
        assert_eq!(body["order"]["items"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn only_a_valid_verdict_counts() {
        assert!(said_valid(br#"{"valid": true, "redeemables": []}"#));
        assert!(!said_valid(br#"{"valid": false}"#));
        assert!(!said_valid(b"not json"));
    }
}
