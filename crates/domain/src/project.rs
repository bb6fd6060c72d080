//! Projects: the tenants. Every other resource belongs to exactly one.

use crate::customer::{check_identifier, double_option};
use crate::error::InvalidInput;
use crate::limits::{MAX_ID_LEN, MAX_TEXT_LEN};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const MAX_TRUSTED_DOMAINS: usize = 50;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub timezone: String,
    pub currency: String,
    pub dial_code: Option<String>,
    pub case_sensitive_codes: bool,
    pub client_trusted_domains: Vec<String>,
    pub client_redeem_enabled: bool,
    pub client_publish_enabled: bool,
    pub client_list_vouchers_enabled: bool,
    pub client_create_customer_enabled: bool,
    pub client_loyalty_events_enabled: bool,
    pub client_set_voucher_expiration_date_enabled: bool,
    /// Request budgets (Tessera addition). Absent: the server's defaults.
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ProjectInput {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub dial_code: Option<Option<String>>,
    #[serde(default)]
    pub case_sensitive_codes: Option<bool>,
    #[serde(default)]
    pub client_trusted_domains: Option<Vec<String>>,
    #[serde(default)]
    pub client_redeem_enabled: Option<bool>,
    #[serde(default)]
    pub client_publish_enabled: Option<bool>,
    #[serde(default)]
    pub client_list_vouchers_enabled: Option<bool>,
    #[serde(default)]
    pub client_create_customer_enabled: Option<bool>,
    #[serde(default)]
    pub client_loyalty_events_enabled: Option<bool>,
    #[serde(default)]
    pub client_set_voucher_expiration_date_enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<RateLimits>)]
    pub rate_limits: Option<Option<RateLimits>>,
}

impl ProjectInput {
    pub fn validate(&self, creating: bool) -> Result<(), InvalidInput> {
        match &self.name {
            Some(n) => check_identifier("name", n)?,
            None if creating => return Err(InvalidInput::payload("Payload must have required property 'name'")),
            None => {}
        }
        if let Some(Some(d)) = &self.description {
            if d.len() > MAX_TEXT_LEN {
                return Err(InvalidInput::payload(format!(
                    "'description' is longer than {MAX_TEXT_LEN} characters"
                )));
            }
        }
        if let Some(tz) = &self.timezone {
            if tz.len() > 64 || jiff::tz::TimeZone::get(tz).is_err() {
                return Err(InvalidInput::payload(format!(
                    "'timezone' must be an IANA time zone name such as 'Europe/Warsaw' or 'UTC', got '{tz}'"
                )));
            }
        }
        if let Some(c) = &self.currency {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(InvalidInput::payload("'currency' must be an ISO 4217 code such as 'USD'"));
            }
        }
        if let Some(Some(d)) = &self.dial_code {
            if d.len() > 8 {
                return Err(InvalidInput::payload("'dial_code' is too long"));
            }
        }
        if let Some(Some(r)) = &self.rate_limits {
            r.validate()?;
        }
        if let Some(domains) = &self.client_trusted_domains {
            if domains.len() > MAX_TRUSTED_DOMAINS || domains.iter().any(|d| d.is_empty() || d.len() > MAX_ID_LEN) {
                return Err(InvalidInput::payload(format!(
                    "'client_trusted_domains' may hold at most {MAX_TRUSTED_DOMAINS} origins"
                )));
            }
        }
        Ok(())
    }

    pub fn create(self, id: String, now: &str) -> Project {
        let mut p = Project {
            id,
            name: String::new(),
            description: None,
            timezone: "UTC".into(),
            currency: "USD".into(),
            dial_code: None,
            case_sensitive_codes: true,
            client_trusted_domains: Vec::new(),
            client_redeem_enabled: false,
            client_publish_enabled: false,
            client_list_vouchers_enabled: false,
            client_create_customer_enabled: false,
            client_loyalty_events_enabled: false,
            client_set_voucher_expiration_date_enabled: false,
            rate_limits: None,
            created_at: now.to_string(),
            updated_at: None,
        };
        self.apply(&mut p);
        p
    }

    pub fn update(self, existing: &Project, now: &str) -> Project {
        let mut p = existing.clone();
        self.apply(&mut p);
        p.updated_at = Some(now.to_string());
        p
    }

    fn apply(self, p: &mut Project) {
        if let Some(v) = self.name {
            p.name = v;
        }
        if let Some(v) = self.description {
            p.description = v;
        }
        if let Some(v) = self.timezone {
            p.timezone = v;
        }
        if let Some(v) = self.currency {
            p.currency = v;
        }
        if let Some(v) = self.dial_code {
            p.dial_code = v;
        }
        if let Some(v) = self.case_sensitive_codes {
            p.case_sensitive_codes = v;
        }
        if let Some(v) = self.client_trusted_domains {
            p.client_trusted_domains = v;
        }
        if let Some(v) = self.rate_limits {
            p.rate_limits = v;
        }
        macro_rules! flag {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { p.$f = v; } )* };
        }
        flag!(
            client_redeem_enabled,
            client_publish_enabled,
            client_list_vouchers_enabled,
            client_create_customer_enabled,
            client_loyalty_events_enabled,
            client_set_voucher_expiration_date_enabled
        );
    }
}

/// A project's request budgets: a sustained rate per minute with a burst, for the whole
/// project, for each of its API keys, and for each client IP on client-side keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RateLimits {
    pub per_minute: u32,
    pub burst: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_client_ip_per_minute: Option<u32>,
    /// Requests one project may have in progress at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// Far above any single machine's capacity; keeps the arithmetic of budgets safe.
pub const MAX_RATE_PER_MINUTE: u32 = 100_000_000;

impl RateLimits {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let ok = |v: u32| (1..=MAX_RATE_PER_MINUTE).contains(&v);
        if !ok(self.per_minute)
            || !ok(self.burst)
            || self.per_key_per_minute.is_some_and(|v| !ok(v))
            || self.per_client_ip_per_minute.is_some_and(|v| !ok(v))
        {
            return Err(InvalidInput::payload(format!(
                "'rate_limits' values must be from 1 to {MAX_RATE_PER_MINUTE}"
            )));
        }
        if self.max_in_flight.is_some_and(|v| !(1..=100_000).contains(&v)) {
            return Err(InvalidInput::payload("'rate_limits.max_in_flight' must be from 1 to 100000"));
        }
        Ok(())
    }
}

/// Whether a browser `Origin` header names one of the project's trusted domains. Entries
/// may be full origins (`https://shop.example`) or bare hosts (`shop.example`), and
/// `*.example.com` admits any subdomain.
pub fn origin_allowed(trusted: &[String], origin: &str) -> bool {
    let host = origin.split("://").nth(1).unwrap_or(origin);
    let host = host.split('/').next().unwrap_or(host);
    let bare_host = host.split(':').next().unwrap_or(host);
    trusted.iter().any(|t| {
        if t == "*" {
            return true;
        }
        if t == origin || t == host || t == bare_host {
            return true;
        }
        if let Some(suffix) = t.strip_prefix("*.") {
            return bare_host.ends_with(&format!(".{suffix}"));
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_needs_a_name_and_valid_zone() {
        assert!(ProjectInput::default().validate(true).is_err());
        let bad_tz = ProjectInput {
            name: Some("x".into()),
            timezone: Some("Mars/Base".into()),
            ..Default::default()
        };
        assert!(bad_tz.validate(true).is_err());
        let ok = ProjectInput {
            name: Some("x".into()),
            timezone: Some("Europe/Warsaw".into()),
            ..Default::default()
        };
        assert!(ok.validate(true).is_ok());
    }

    #[test]
    fn origins() {
        let t = vec![
            "https://shop.example".to_string(),
            "*.brand.io".to_string(),
            "localhost".to_string(),
        ];
        assert!(origin_allowed(&t, "https://shop.example"));
        assert!(!origin_allowed(&t, "https://evil.example"));
        assert!(origin_allowed(&t, "https://eu.brand.io"));
        assert!(!origin_allowed(&t, "https://brand.io.evil.com"));
        assert!(origin_allowed(&t, "http://localhost:3000"));
    }
}
