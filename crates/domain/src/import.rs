//! Imports of customers, products and SKUs: how a CSV record or a JSON item becomes the
//! same input the resource's own endpoint takes. Pure, so every mapping is unit-tested;
//! the store runs the result through the endpoint's validation and upsert.

use crate::customer::{Address, CustomerInput};
use crate::error::InvalidInput;
use crate::metadata_schema::MetadataSchema;
use crate::product::{ProductInput, SkuInput};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Rows per staged chunk on the embedded engine; one chunk is imported in one
/// transaction, so this trades commits (an fsync each) against how long the writer is
/// held (a 2,000-row chunk takes tens of milliseconds).
pub const CHUNK_ROWS: usize = 2000;
/// Rows per chunk on PostgreSQL: each statement is a round trip there, and each row
/// takes up to two advisory locks held to the end of the transaction, which must stay
/// well inside the server's lock table (64 per connection by default).
pub const CHUNK_ROWS_POSTGRES: usize = 250;

/// Rows per chunk for an engine (`Store::engine_name`).
pub fn chunk_rows(engine: &str) -> usize {
    if engine == "postgres" {
        CHUNK_ROWS_POSTGRES
    } else {
        CHUNK_ROWS
    }
}
/// Bytes of cells after which a chunk is closed early (wide rows).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Longest CSV record accepted, in bytes; a longer one is refused as a row.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Failures listed in an import's result; all of them are counted.
pub const MAX_REPORTED_FAILURES: usize = 1000;

/// What an import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Customers,
    Products,
    Skus,
}

impl Target {
    /// The metadata schema resource checked on each row.
    pub fn resource(self) -> &'static str {
        match self {
            Target::Customers => "customer",
            Target::Products => "product",
            Target::Skus => "sku",
        }
    }

    /// The noun of the result message ("3 customer(s) imported successfully").
    pub fn noun(self) -> &'static str {
        self.resource()
    }
}

/// An import async action type: what it writes and from which input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportKind {
    pub target: Target,
    /// CSV records (true) or JSON items of a bulk request (false).
    pub csv: bool,
}

impl ImportKind {
    /// The kind of an async action type, if it is one of these imports.
    pub fn of(action_type: &str) -> Option<ImportKind> {
        let (target, csv) = match action_type {
            "CUSTOMERS.IMPORT_CSV" => (Target::Customers, true),
            "CUSTOMERS.BULK_UPDATE" => (Target::Customers, false),
            "PRODUCTS.IMPORT_CSV" => (Target::Products, true),
            "PRODUCTS.BULK_UPDATE" => (Target::Products, false),
            "SKUS.IMPORT_CSV" => (Target::Skus, true),
            _ => return None,
        };
        Some(ImportKind { target, csv })
    }
}

/// A staged chunk: consecutive rows, the first numbered by the staged row's `row_no`.
/// CSV records are their cells (an unreadable record is an empty list, with its reason
/// in `unreadable` under its index); JSON items are kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreadable: BTreeMap<usize, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Value>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.cells.len() + self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Header names compared without case, surrounding spaces, or the difference between
/// a space, a hyphen and an underscore (`Source ID`, `source-id`, `Source_id`).
pub fn normalize_header(h: &str) -> String {
    h.trim()
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A column of a customers CSV (Voucherify's names: `Id`, `Name`, `Email`, `Phone`,
/// `Birthdate`, `Source_id`, `Address_line_1`, ... `Description`); any other column is a
/// metadata property named by its header as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerColumn {
    Id,
    SourceId,
    Name,
    Email,
    Phone,
    Birthdate,
    Birthday,
    Description,
    Line1,
    Line2,
    PostalCode,
    City,
    State,
    Country,
    Metadata(String),
}

impl CustomerColumn {
    pub fn parse(header: &str) -> CustomerColumn {
        match normalize_header(header).as_str() {
            "id" => CustomerColumn::Id,
            "source_id" | "sourceid" => CustomerColumn::SourceId,
            "name" => CustomerColumn::Name,
            "email" => CustomerColumn::Email,
            "phone" => CustomerColumn::Phone,
            "birthdate" => CustomerColumn::Birthdate,
            "birthday" => CustomerColumn::Birthday,
            "description" => CustomerColumn::Description,
            "address_line_1" | "address_line1" => CustomerColumn::Line1,
            "address_line_2" | "address_line2" => CustomerColumn::Line2,
            "address_postal_code" => CustomerColumn::PostalCode,
            "address_city" => CustomerColumn::City,
            "address_state" => CustomerColumn::State,
            "address_country" => CustomerColumn::Country,
            _ => CustomerColumn::Metadata(header.trim().to_string()),
        }
    }
}

/// A column of a products CSV: `name`, `source_id`, `price`, `attributes`, `image_url`
/// (and `id`); any other column is metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductColumn {
    Id,
    SourceId,
    Name,
    Price,
    Attributes,
    ImageUrl,
    Metadata(String),
}

impl ProductColumn {
    pub fn parse(header: &str) -> ProductColumn {
        match normalize_header(header).as_str() {
            "id" => ProductColumn::Id,
            "source_id" | "sourceid" => ProductColumn::SourceId,
            "name" => ProductColumn::Name,
            "price" => ProductColumn::Price,
            "attributes" => ProductColumn::Attributes,
            "image_url" => ProductColumn::ImageUrl,
            _ => ProductColumn::Metadata(header.trim().to_string()),
        }
    }
}

/// A column of a SKUs CSV: `product_id` (the product's id or source id), `sku`,
/// `source_id`, `price`, `currency`, `image_url`, `attributes`; any other is metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkuColumn {
    ProductId,
    Sku,
    SourceId,
    Price,
    Currency,
    ImageUrl,
    Attributes,
    Metadata(String),
}

impl SkuColumn {
    pub fn parse(header: &str) -> SkuColumn {
        match normalize_header(header).as_str() {
            "product_id" | "productid" => SkuColumn::ProductId,
            "sku" => SkuColumn::Sku,
            "source_id" | "sourceid" => SkuColumn::SourceId,
            "price" => SkuColumn::Price,
            "currency" => SkuColumn::Currency,
            "image_url" => SkuColumn::ImageUrl,
            "attributes" => SkuColumn::Attributes,
            _ => SkuColumn::Metadata(header.trim().to_string()),
        }
    }
}

/// A CSV cell as a metadata value. Cells are text; where the project's schema defines the
/// property, the cell is read as its type (numbers, booleans, objects and geopoints as
/// JSON; an array property as comma-separated values, as Voucherify's import reads
/// them). A cell that does not read as its type stays text, so the schema check reports
/// it.
pub fn metadata_cell(schema: Option<&MetadataSchema>, name: &str, cell: &str) -> Value {
    let Some(def) = schema.and_then(|s| s.properties.get(name)).filter(|d| !d.deleted) else {
        return Value::String(cell.to_string());
    };
    use crate::metadata_schema::DefType;
    let one = |s: &str| -> Value {
        let s = s.trim();
        match def.kind {
            DefType::Number => {
                if let Ok(i) = s.parse::<i64>() {
                    return Value::from(i);
                }
                match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    Some(n) => Value::Number(n),
                    None => Value::String(s.to_string()),
                }
            }
            DefType::Boolean => match s.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(s.to_string()),
            },
            DefType::Object | DefType::Geopoint => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => Value::String(s.to_string()),
            },
            _ => Value::String(s.to_string()),
        }
    };
    if def.array {
        Value::Array(cell.split(',').filter(|s| !s.trim().is_empty()).map(one).collect())
    } else {
        one(cell)
    }
}

fn addr(a: &mut Option<Address>) -> &mut Address {
    a.get_or_insert_with(Address::default)
}

fn refuse(details: impl Into<String>) -> InvalidInput {
    InvalidInput::payload(details)
}

/// The first non-empty cell of a column, trimmed.
fn cell_of<'a, C: PartialEq>(columns: &[C], cells: &'a [String], which: &C) -> Option<&'a str> {
    columns
        .iter()
        .zip(cells)
        .find(|(c, v)| *c == which && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

/// Checks that a record has as many cells as the header.
pub fn check_width(header_len: usize, cells: &[String]) -> Result<(), InvalidInput> {
    if cells.len() != header_len {
        return Err(refuse(format!(
            "malformed CSV line: {} field(s) where the header has {header_len}",
            cells.len()
        )));
    }
    Ok(())
}

/// The source id a customers CSV record names, for reports.
pub fn customer_source_id<'a>(columns: &[CustomerColumn], cells: &'a [String]) -> Option<&'a str> {
    cell_of(columns, cells, &CustomerColumn::SourceId)
}

/// A customers CSV record as the input of `POST /v1/customers`. Empty cells leave the
/// field as it is; metadata columns are typed by the schema (`metadata_cell`).
pub fn customer_from_csv(
    columns: &[CustomerColumn],
    cells: &[String],
    schema: Option<&MetadataSchema>,
) -> Result<CustomerInput, InvalidInput> {
    check_width(columns.len(), cells)?;
    let mut input = CustomerInput::default();
    let mut address: Option<Address> = None;
    let mut metadata = Map::new();
    for (col, cell) in columns.iter().zip(cells) {
        let v = cell.trim();
        if v.is_empty() {
            continue;
        }
        let text = || Some(Some(v.to_string()));
        match col {
            CustomerColumn::Id => input.id = Some(v.to_string()),
            CustomerColumn::SourceId => input.source_id = Some(v.to_string()),
            CustomerColumn::Name => input.name = text(),
            CustomerColumn::Email => input.email = text(),
            CustomerColumn::Phone => input.phone = text(),
            CustomerColumn::Birthdate => input.birthdate = text(),
            CustomerColumn::Birthday => input.birthday = text(),
            CustomerColumn::Description => input.description = text(),
            CustomerColumn::Line1 => addr(&mut address).line_1 = Some(v.to_string()),
            CustomerColumn::Line2 => addr(&mut address).line_2 = Some(v.to_string()),
            CustomerColumn::PostalCode => addr(&mut address).postal_code = Some(v.to_string()),
            CustomerColumn::City => addr(&mut address).city = Some(v.to_string()),
            CustomerColumn::State => addr(&mut address).state = Some(v.to_string()),
            CustomerColumn::Country => addr(&mut address).country = Some(v.to_string()),
            CustomerColumn::Metadata(name) => {
                metadata.insert(name.clone(), metadata_cell(schema, name, v));
            }
        }
    }
    if address.is_some() {
        input.address = Some(address);
    }
    if !metadata.is_empty() {
        input.metadata = Some(Some(metadata));
    }
    Ok(input)
}

fn price_cell(v: &str) -> Result<i64, InvalidInput> {
    v.parse::<i64>()
        .map_err(|_| refuse(format!("'price' must be an integer amount in minor units, got '{v}'")))
}

pub fn product_source_id<'a>(columns: &[ProductColumn], cells: &'a [String]) -> Option<&'a str> {
    cell_of(columns, cells, &ProductColumn::SourceId)
}

/// A products CSV record as the input of `POST /v1/products`. `attributes` is a
/// comma-separated list of attribute names.
pub fn product_from_csv(
    columns: &[ProductColumn],
    cells: &[String],
    schema: Option<&MetadataSchema>,
) -> Result<ProductInput, InvalidInput> {
    check_width(columns.len(), cells)?;
    let mut input = ProductInput::default();
    let mut metadata = Map::new();
    for (col, cell) in columns.iter().zip(cells) {
        let v = cell.trim();
        if v.is_empty() {
            continue;
        }
        match col {
            ProductColumn::Id => input.id = Some(v.to_string()),
            ProductColumn::SourceId => input.source_id = Some(v.to_string()),
            ProductColumn::Name => input.name = Some(Some(v.to_string())),
            ProductColumn::Price => input.price = Some(Some(price_cell(v)?)),
            ProductColumn::Attributes => {
                let names = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                input.attributes = Some(Some(names));
            }
            ProductColumn::ImageUrl => input.image_url = Some(Some(v.to_string())),
            ProductColumn::Metadata(name) => {
                metadata.insert(name.clone(), metadata_cell(schema, name, v));
            }
        }
    }
    if !metadata.is_empty() {
        input.metadata = Some(Some(metadata));
    }
    Ok(input)
}

pub fn sku_source_id<'a>(columns: &[SkuColumn], cells: &'a [String]) -> Option<&'a str> {
    cell_of(columns, cells, &SkuColumn::SourceId)
}

/// A SKUs CSV record as its product's key (id or source id) and the input of
/// `POST /v1/products/{id}/skus`. `attributes` is a JSON object; Voucherify's template
/// writes it with single quotes (`{'color':'blue'}`), which is accepted too.
pub fn sku_from_csv(columns: &[SkuColumn], cells: &[String], schema: Option<&MetadataSchema>) -> Result<(String, SkuInput), InvalidInput> {
    check_width(columns.len(), cells)?;
    let mut input = SkuInput::default();
    let mut product = None;
    let mut metadata = Map::new();
    for (col, cell) in columns.iter().zip(cells) {
        let v = cell.trim();
        if v.is_empty() {
            continue;
        }
        match col {
            SkuColumn::ProductId => product = Some(v.to_string()),
            SkuColumn::Sku => input.sku = Some(Some(v.to_string())),
            SkuColumn::SourceId => input.source_id = Some(v.to_string()),
            SkuColumn::Price => input.price = Some(Some(price_cell(v)?)),
            SkuColumn::Currency => input.currency = Some(Some(v.to_string())),
            SkuColumn::ImageUrl => input.image_url = Some(Some(v.to_string())),
            SkuColumn::Attributes => {
                let parsed = serde_json::from_str::<Map<String, Value>>(v)
                    .or_else(|_| serde_json::from_str::<Map<String, Value>>(&v.replace('\'', "\"")))
                    .map_err(|_| {
                        refuse(format!(
                            "'attributes' must be a JSON object such as {{\"color\":\"blue\"}}, got '{v}'"
                        ))
                    })?;
                input.attributes = Some(Some(parsed));
            }
            SkuColumn::Metadata(name) => {
                metadata.insert(name.clone(), metadata_cell(schema, name, v));
            }
        }
    }
    if !metadata.is_empty() {
        input.metadata = Some(Some(metadata));
    }
    let product = product.ok_or_else(|| refuse("the row has no product_id"))?;
    Ok((product, input))
}

/// Every import row must name its resource by `source_id` (or by the `id` of one that
/// exists): rows are upserted by it, which is what makes running an import again update
/// the same resources instead of creating them twice.
pub fn require_key(id: &Option<String>, source_id: &Option<String>) -> Result<(), InvalidInput> {
    if id.is_none() && source_id.is_none() {
        return Err(refuse(
            "the row has no source_id: imports upsert by source_id, so a row without one could not be imported again without creating a duplicate",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cells(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn schema(v: Value) -> MetadataSchema {
        serde_json::from_value::<crate::metadata_schema::SchemaInput>(v)
            .expect("input")
            .create("ms_1".into(), "now")
            .expect("valid")
    }

    #[test]
    fn customer_columns_map_to_fields_and_metadata() {
        let header = [
            "Source_id",
            "Name",
            "Email",
            "Address_City",
            "Address Country",
            "region",
            "score",
            "tags",
        ];
        let cols: Vec<CustomerColumn> = header.iter().map(|h| CustomerColumn::parse(h)).collect();
        assert_eq!(cols[4], CustomerColumn::Country);
        let s = schema(json!({"related_object": "customer", "properties": {
            "score": {"type": "number", "optional": true},
            "tags": {"type": "string", "array": true, "optional": true}}}));
        let row = cells(&["c-1", " Ada ", "ada@example.com", "Paris", "FR", "EU", "42", "a, b"]);
        let input = customer_from_csv(&cols, &row, Some(&s)).expect("valid");
        assert_eq!(input.source_id.as_deref(), Some("c-1"));
        assert_eq!(input.name, Some(Some("Ada".into())));
        let addr = input.address.clone().flatten().expect("address");
        assert_eq!((addr.city.as_deref(), addr.country.as_deref()), (Some("Paris"), Some("FR")));
        let m = input.metadata.clone().flatten().expect("metadata");
        assert_eq!(m["region"], json!("EU"));
        assert_eq!(m["score"], json!(42));
        assert_eq!(m["tags"], json!(["a", "b"]));
        // Without a schema every cell is text.
        let plain = customer_from_csv(&cols, &row, None).expect("valid");
        assert_eq!(plain.metadata.flatten().expect("metadata")["score"], json!("42"));
        assert_eq!(customer_source_id(&cols, &row), Some("c-1"));
    }

    #[test]
    fn empty_cells_leave_fields_alone_and_width_is_checked() {
        let cols: Vec<CustomerColumn> = ["source_id", "name", "email"].iter().map(|h| CustomerColumn::parse(h)).collect();
        let input = customer_from_csv(&cols, &cells(&["c-1", "", ""]), None).expect("valid");
        assert!(input.name.is_none() && input.email.is_none() && input.metadata.is_none());
        let err = customer_from_csv(&cols, &cells(&["c-1", "x"]), None).expect_err("short row");
        assert!(err.details.contains("malformed CSV line"), "{}", err.details);
        assert!(require_key(&None, &None).is_err());
        assert!(require_key(&None, &Some("x".into())).is_ok());
    }

    #[test]
    fn schema_typed_cells_that_do_not_read_stay_text() {
        let s = schema(json!({"related_object": "customer", "properties": {
            "n": {"type": "number"}, "b": {"type": "boolean"}, "o": {"type": "object"}}}));
        assert_eq!(metadata_cell(Some(&s), "n", "1.5"), json!(1.5));
        assert_eq!(metadata_cell(Some(&s), "n", "x"), json!("x"));
        assert_eq!(metadata_cell(Some(&s), "b", "TRUE"), json!(true));
        assert_eq!(metadata_cell(Some(&s), "o", r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(metadata_cell(Some(&s), "other", "1"), json!("1"));
    }

    #[test]
    fn products_and_skus_map() {
        let cols: Vec<ProductColumn> = ["name", "source_id", "price", "attributes", "vendor"]
            .iter()
            .map(|h| ProductColumn::parse(h))
            .collect();
        let p = product_from_csv(&cols, &cells(&["Phone", "p-1", "1999", "color, memory", "V1"]), None).expect("valid");
        assert_eq!(p.price, Some(Some(1999)));
        assert_eq!(p.attributes, Some(Some(vec!["color".to_string(), "memory".to_string()])));
        assert_eq!(p.metadata.flatten().expect("metadata")["vendor"], json!("V1"));
        assert!(product_from_csv(&cols, &cells(&["Phone", "p-1", "12.5", "", ""]), None).is_err());

        let cols: Vec<SkuColumn> = ["product_id", "sku", "source_id", "price", "attributes"]
            .iter()
            .map(|h| SkuColumn::parse(h))
            .collect();
        let (prod, s) = sku_from_csv(&cols, &cells(&["p-1", "Red", "s-1", "100", "{'color':'red'}"]), None).expect("valid");
        assert_eq!(prod, "p-1");
        assert_eq!(s.attributes.flatten().expect("attributes")["color"], json!("red"));
        assert!(sku_from_csv(&cols, &cells(&["", "Red", "s-1", "100", ""]), None).is_err());
    }

    #[test]
    fn chunks_round_trip() {
        let mut c = Chunk {
            cells: vec![cells(&["a", "b"]), vec![]],
            ..Chunk::default()
        };
        c.unreadable.insert(1, "not UTF-8".into());
        let text = serde_json::to_string(&c).expect("serializes");
        assert_eq!(serde_json::from_str::<Chunk>(&text).expect("parses"), c);
        assert_eq!(c.len(), 2);
        assert_eq!(ImportKind::of("CUSTOMERS.IMPORT_CSV").map(|k| k.csv), Some(true));
        assert_eq!(ImportKind::of("VOUCHERS.IMPORT"), None);
    }
}
