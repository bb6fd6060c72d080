//! Products and their SKUs: what validation rules and discounts target.

use crate::customer::{check_identifier, check_metadata, check_nested_len, double_option};
use crate::error::InvalidInput;
use crate::limits::{MAX_AMOUNT, MAX_ID_LEN, MAX_TEXT_LEN};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

const MAX_ATTRIBUTES: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub source_id: Option<String>,
    pub name: Option<String>,
    pub price: Option<i64>,
    pub attributes: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub image_url: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ProductInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub attributes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub image_url: Option<Option<String>>,
}

fn check_price(v: &Option<Option<i64>>) -> Result<(), InvalidInput> {
    if let Some(Some(p)) = v {
        if !(0..=MAX_AMOUNT).contains(p) {
            return Err(InvalidInput::payload(format!(
                "'price' must be an integer amount in minor units from 0 to {MAX_AMOUNT}"
            )));
        }
    }
    Ok(())
}

impl ProductInput {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(id) = &self.id {
            check_identifier("id", id)?;
        }
        if let Some(s) = &self.source_id {
            check_identifier("source_id", s)?;
        }
        check_nested_len("name", &self.name, MAX_ID_LEN)?;
        check_nested_len("image_url", &self.image_url, MAX_TEXT_LEN)?;
        check_price(&self.price)?;
        if let Some(Some(a)) = &self.attributes {
            if a.len() > MAX_ATTRIBUTES || a.iter().any(|s| s.is_empty() || s.len() > MAX_ID_LEN) {
                return Err(InvalidInput::payload(format!(
                    "'attributes' must hold at most {MAX_ATTRIBUTES} names of 1 to {MAX_ID_LEN} characters"
                )));
            }
        }
        if let Some(Some(m)) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }

    pub fn create(self, id: String, now: &str) -> Product {
        let mut p = Product {
            id,
            source_id: self.source_id.clone(),
            name: None,
            price: None,
            attributes: Vec::new(),
            metadata: Map::new(),
            image_url: None,
            created_at: now.to_string(),
            updated_at: None,
        };
        self.apply(&mut p);
        p
    }

    pub fn update(self, existing: &Product, now: &str) -> Product {
        let mut p = existing.clone();
        if p.source_id.is_none() {
            p.source_id = self.source_id.clone();
        }
        self.apply(&mut p);
        p.updated_at = Some(now.to_string());
        p
    }

    fn apply(self, p: &mut Product) {
        if let Some(v) = self.name {
            p.name = v;
        }
        if let Some(v) = self.price {
            p.price = v;
        }
        if let Some(v) = self.attributes {
            p.attributes = v.unwrap_or_default();
        }
        if let Some(v) = self.metadata {
            p.metadata = v.unwrap_or_default();
        }
        if let Some(v) = self.image_url {
            p.image_url = v;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sku {
    pub id: String,
    pub source_id: Option<String>,
    pub product_id: String,
    pub sku: Option<String>,
    pub price: Option<i64>,
    pub currency: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub image_url: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct SkuInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub sku: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub currency: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Option<Map<String, Value>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub image_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Map<String, Value>>>,
}

impl SkuInput {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if let Some(id) = &self.id {
            check_identifier("id", id)?;
        }
        if let Some(s) = &self.source_id {
            check_identifier("source_id", s)?;
        }
        check_nested_len("sku", &self.sku, MAX_ID_LEN)?;
        check_nested_len("currency", &self.currency, 3)?;
        check_nested_len("image_url", &self.image_url, MAX_TEXT_LEN)?;
        check_price(&self.price)?;
        if let Some(Some(m)) = &self.attributes {
            check_metadata("attributes", m)?;
        }
        if let Some(Some(m)) = &self.metadata {
            check_metadata("metadata", m)?;
        }
        Ok(())
    }

    pub fn create(self, id: String, product_id: String, now: &str) -> Sku {
        let mut s = Sku {
            id,
            source_id: self.source_id.clone(),
            product_id,
            sku: None,
            price: None,
            currency: None,
            attributes: Map::new(),
            image_url: None,
            metadata: Map::new(),
            created_at: now.to_string(),
            updated_at: None,
        };
        self.apply(&mut s);
        s
    }

    pub fn update(self, existing: &Sku, now: &str) -> Sku {
        let mut s = existing.clone();
        if s.source_id.is_none() {
            s.source_id = self.source_id.clone();
        }
        self.apply(&mut s);
        s.updated_at = Some(now.to_string());
        s
    }

    fn apply(self, s: &mut Sku) {
        if let Some(v) = self.sku {
            s.sku = v;
        }
        if let Some(v) = self.price {
            s.price = v;
        }
        if let Some(v) = self.currency {
            s.currency = v;
        }
        if let Some(v) = self.attributes {
            s.attributes = v.unwrap_or_default();
        }
        if let Some(v) = self.image_url {
            s.image_url = v;
        }
        if let Some(v) = self.metadata {
            s.metadata = v.unwrap_or_default();
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuView {
    #[serde(flatten)]
    pub sku: Sku,
    /// Always `sku`.
    pub object: &'static str,
}

impl From<Sku> for SkuView {
    fn from(sku: Sku) -> Self {
        SkuView { sku, object: "sku" }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SkuList {
    pub object: &'static str,
    pub data_ref: &'static str,
    pub data: Vec<SkuView>,
    pub total: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductView {
    #[serde(flatten)]
    pub product: Product,
    pub skus: SkuList,
    /// Always `product`.
    pub object: &'static str,
}

impl ProductView {
    pub fn new(product: Product, skus: Vec<Sku>, total_skus: i64) -> Self {
        ProductView {
            product,
            skus: SkuList {
                object: "list",
                data_ref: "data",
                data: skus.into_iter().map(SkuView::from).collect(),
                total: total_skus,
            },
            object: "product",
        }
    }
}
