//! Publications: codes handed to customers.

use crate::customer::{check_identifier, check_metadata, CustomerInput};
use crate::error::InvalidInput;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Most codes one publication request may hand out.
pub const MAX_PUBLISH_COUNT: u32 = 20;

/// The campaign to publish from: its name or id, or `{name, count}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CampaignRef {
    Name(String),
    Object {
        name: String,
        #[serde(default)]
        count: Option<u32>,
    },
}

impl CampaignRef {
    pub fn name(&self) -> &str {
        match self {
            CampaignRef::Name(n) | CampaignRef::Object { name: n, .. } => n,
        }
    }

    pub fn count(&self) -> u32 {
        match self {
            CampaignRef::Name(_) => 1,
            CampaignRef::Object { count, .. } => count.unwrap_or(1),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct PublicationInput {
    /// A specific code to publish.
    #[serde(default)]
    pub voucher: Option<String>,
    #[serde(default)]
    pub campaign: Option<CampaignRef>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub customer: Option<CustomerInput>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

impl PublicationInput {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        match (&self.voucher, &self.campaign) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(InvalidInput::payload(
                    "name either a 'voucher' (a code) or a 'campaign' to publish from, not both",
                ))
            }
            _ => {}
        }
        if let Some(v) = &self.voucher {
            check_identifier("voucher", v)?;
        }
        if let Some(c) = &self.campaign {
            check_identifier("campaign.name", c.name())?;
            if !(1..=MAX_PUBLISH_COUNT).contains(&c.count()) {
                return Err(InvalidInput::payload(format!(
                    "'campaign.count' must be from 1 to {MAX_PUBLISH_COUNT}"
                )));
            }
            if self.source_id.is_some() && c.count() > 1 {
                return Err(InvalidInput::payload("with a 'source_id', a publication hands out one code"));
            }
        }
        let customer = self
            .customer
            .as_ref()
            .ok_or_else(|| InvalidInput::payload("Payload must have required property 'customer'"))?;
        if customer.id.is_none() && customer.source_id.is_none() {
            return Err(InvalidInput::payload("'customer' needs an 'id' or a 'source_id'"));
        }
        customer.validate()?;
        self.validate_extras()
    }

    /// Checks the fields a publication carries besides its code and customer.
    pub fn validate_extras(&self) -> Result<(), InvalidInput> {
        if let Some(c) = &self.campaign {
            check_identifier("campaign.name", c.name())?;
        }
        for (name, v) in [("source_id", &self.source_id), ("channel", &self.channel)] {
            if let Some(v) = v {
                check_identifier(name, v)?;
            }
        }
        if let Some(m) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> PublicationInput {
        serde_json::from_value(v).expect("input")
    }

    #[test]
    fn a_publication_names_one_source_and_a_customer() {
        input(serde_json::json!({"campaign": "Spring", "customer": {"source_id": "ann"}}))
            .validate()
            .expect("valid");
        let p = input(serde_json::json!({"campaign": {"name": "Spring", "count": 3}, "customer": {"id": "cust_1"}}));
        p.validate().expect("valid");
        assert_eq!(p.campaign.map(|c| c.count()), Some(3));
        for bad in [
            serde_json::json!({"customer": {"source_id": "ann"}}),
            serde_json::json!({"voucher": "A", "campaign": "B", "customer": {"source_id": "ann"}}),
            serde_json::json!({"voucher": "A"}),
            serde_json::json!({"voucher": "A", "customer": {"name": "Ann"}}),
            serde_json::json!({"campaign": {"name": "B", "count": 0}, "customer": {"source_id": "ann"}}),
            serde_json::json!({"campaign": {"name": "B", "count": 2}, "source_id": "p1", "customer": {"source_id": "ann"}}),
        ] {
            assert!(input(bad.clone()).validate().is_err(), "{bad}");
        }
    }
}
