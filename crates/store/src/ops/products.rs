//! Products and SKUs of a project.

use crate::conn::{Conn, Val};
use crate::ops::docs::{self, to_json, Table};
use crate::ops::org::Tenant;
use crate::{Result, Store, StoreError};
use serde_json::{Map, Value};
use tessera_domain::ids::new_id;
use tessera_domain::list::{ListQuery, ListSpec, SortField};
use tessera_domain::metadata_schema::MetadataSchema;
use tessera_domain::product::{Product, ProductInput, Sku, SkuInput};
use tessera_domain::time::now_string;
use tessera_domain::InvalidInput;

pub const PRODUCTS: Table = Table {
    name: "products",
    resource_type: "product",
};
pub const SKUS: Table = Table {
    name: "skus",
    resource_type: "sku",
};

pub const LIST_SPEC: ListSpec = ListSpec {
    sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
    filters: &[],
    default_limit: 10,
};

/// SKUs embedded in a product response (the full list is paginated separately); kept
/// small so a page of 100 products stays a bounded response.
const EMBEDDED_SKUS: i64 = 20;

fn save_product(c: &mut dyn Conn, p: &str, prod: &Product) -> Result<()> {
    c.execute(
        "INSERT INTO products (project_id, id, source_id, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (project_id, id) DO UPDATE SET source_id = excluded.source_id, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            prod.id.clone().into(),
            prod.source_id.clone().into(),
            prod.created_at.clone().into(),
            prod.updated_at.clone().into(),
            to_json(prod)?.into(),
        ],
    )?;
    Ok(())
}

fn save_sku(c: &mut dyn Conn, p: &str, sku: &Sku) -> Result<()> {
    c.execute(
        "INSERT INTO skus (project_id, id, product_id, source_id, created_at, updated_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (project_id, id) DO UPDATE SET source_id = excluded.source_id, updated_at = excluded.updated_at, data = excluded.data",
        &[
            p.into(),
            sku.id.clone().into(),
            sku.product_id.clone().into(),
            sku.source_id.clone().into(),
            sku.created_at.clone().into(),
            sku.updated_at.clone().into(),
            to_json(sku)?.into(),
        ],
    )?;
    Ok(())
}

fn skus_of(c: &mut dyn Conn, p: &str, product_id: &str) -> Result<(Vec<Sku>, i64)> {
    let total = c
        .query_one(
            "SELECT COUNT(*) FROM skus WHERE project_id = $1 AND product_id = $2",
            &[p.into(), product_id.into()],
        )?
        .int(0)?;
    let rows = c.query(
        "SELECT data FROM skus WHERE project_id = $1 AND product_id = $2 ORDER BY created_at, id LIMIT $3",
        &[p.into(), product_id.into(), Val::Int(EMBEDDED_SKUS)],
    )?;
    Ok((rows.iter().map(|r| r.json(0)).collect::<Result<_>>()?, total))
}

/// A product with the first page of its SKUs and their count.
pub type ProductWithSkus = (Product, Vec<Sku>, i64);

fn with_skus(c: &mut dyn Conn, p: &str, prod: Product) -> Result<ProductWithSkus> {
    let (skus, total) = skus_of(c, p, &prod.id)?;
    Ok((prod, skus, total))
}

fn find_existing<T: serde::de::DeserializeOwned>(
    c: &mut dyn Conn,
    t: &Table,
    p: &str,
    id: &Option<String>,
    source_id: &Option<String>,
) -> Result<Option<T>> {
    match (id, source_id) {
        (Some(id), source) => match docs::find_by_id(c, t, p, id)? {
            Some(found) => Ok(Some(found)),
            None => match source {
                Some(s) => docs::find_by_source_id(c, t, p, s),
                None => Err(StoreError::not_found(t.resource_type, id.clone())),
            },
        },
        (None, Some(s)) => docs::find_by_source_id(c, t, p, s),
        (None, None) => Ok(None),
    }
}

impl Store {
    pub async fn upsert_product(&self, t: &Tenant, input: ProductInput) -> Result<ProductWithSkus> {
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            if let Some(sid) = &input.source_id {
                c.lock_key(&format!("product:{p}:{sid}"))?;
            }
            let now = now_string();
            let existing = match find_existing::<Product>(c, &PRODUCTS, &p, &input.id, &input.source_id)? {
                Some(e) => docs::relock::<Product>(c, &PRODUCTS, &p, &e.id)?,
                None => None,
            };
            let prod = match existing {
                Some(e) => input.update(&e, &now),
                None => input.create(new_id("prod"), &now),
            };
            crate::ops::metadata_schemas::enforce(c, &p, "product", &prod.metadata)?;
            save_product(c, &p, &prod)?;
            with_skus(c, &p, prod)
        })
        .await
    }

    pub async fn get_product(&self, t: &Tenant, key: String) -> Result<ProductWithSkus> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let prod: Product = docs::get(c, &PRODUCTS, &p, &key)?;
            with_skus(c, &p, prod)
        })
        .await
    }

    pub async fn update_product(&self, t: &Tenant, key: String, mut input: ProductInput) -> Result<ProductWithSkus> {
        input.id = None;
        input.source_id = None;
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let existing: Product = docs::get_for_update(c, &PRODUCTS, &p, &key)?;
            let prod = input.update(&existing, &now_string());
            crate::ops::metadata_schemas::enforce(c, &p, "product", &prod.metadata)?;
            save_product(c, &p, &prod)?;
            with_skus(c, &p, prod)
        })
        .await
    }

    /// Deletes the product and its SKUs together.
    pub async fn delete_product(&self, t: &Tenant, key: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let id = docs::delete(c, &PRODUCTS, &p, &key)?;
            c.execute("DELETE FROM skus WHERE project_id = $1 AND product_id = $2", &[p.into(), id.into()])?;
            Ok(())
        })
        .await
    }

    pub async fn list_products(&self, t: &Tenant, q: ListQuery) -> Result<(Vec<ProductWithSkus>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let (prods, total) = docs::list::<Product>(c, &PRODUCTS, &p, &q, &[], &[])?;
            let items = prods.into_iter().map(|prod| with_skus(c, &p, prod)).collect::<Result<Vec<_>>>()?;
            Ok((items, total))
        })
        .await
    }

    pub async fn upsert_sku(&self, t: &Tenant, product_key: String, input: SkuInput) -> Result<Sku> {
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let prod: Product = docs::get(c, &PRODUCTS, &p, &product_key)?;
            if let Some(sid) = &input.source_id {
                c.lock_key(&format!("sku:{p}:{sid}"))?;
            }
            let now = now_string();
            let existing = match find_existing::<Sku>(c, &SKUS, &p, &input.id, &input.source_id)? {
                Some(e) => docs::relock::<Sku>(c, &SKUS, &p, &e.id)?,
                None => None,
            };
            let sku = match existing {
                Some(e) if e.product_id != prod.id => {
                    return Err(StoreError::Conflict {
                        key: "duplicate_source_id",
                        message: "Duplicate SKU".into(),
                        details: format!("SKU {} belongs to another product", e.id),
                    })
                }
                Some(e) => input.update(&e, &now),
                None => input.create(new_id("sku"), prod.id.clone(), &now),
            };
            crate::ops::metadata_schemas::enforce(c, &p, "sku", &sku.metadata)?;
            save_sku(c, &p, &sku)?;
            Ok(sku)
        })
        .await
    }

    /// One SKU by id or source id, optionally required to belong to a product.
    pub async fn get_sku(&self, t: &Tenant, product_key: Option<String>, key: String) -> Result<Sku> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let sku: Sku = docs::get(c, &SKUS, &p, &key)?;
            if let Some(pk) = product_key {
                let prod: Product = docs::get(c, &PRODUCTS, &p, &pk)?;
                if prod.id != sku.product_id {
                    return Err(StoreError::not_found("sku", key));
                }
            }
            Ok(sku)
        })
        .await
    }

    pub async fn update_sku(&self, t: &Tenant, product_key: String, key: String, mut input: SkuInput) -> Result<Sku> {
        input.id = None;
        input.source_id = None;
        input.validate()?;
        let p = t.project_id().to_string();
        self.write(move |c| {
            let prod: Product = docs::get(c, &PRODUCTS, &p, &product_key)?;
            let existing: Sku = docs::get_for_update(c, &SKUS, &p, &key)?;
            if existing.product_id != prod.id {
                return Err(StoreError::not_found("sku", key));
            }
            let sku = input.update(&existing, &now_string());
            crate::ops::metadata_schemas::enforce(c, &p, "sku", &sku.metadata)?;
            save_sku(c, &p, &sku)?;
            Ok(sku)
        })
        .await
    }

    pub async fn delete_sku(&self, t: &Tenant, product_key: String, key: String) -> Result<()> {
        let p = t.project_id().to_string();
        self.write(move |c| {
            let prod: Product = docs::get(c, &PRODUCTS, &p, &product_key)?;
            let existing: Sku = docs::get(c, &SKUS, &p, &key)?;
            if existing.product_id != prod.id {
                return Err(StoreError::not_found("sku", key));
            }
            c.execute(
                "DELETE FROM skus WHERE project_id = $1 AND id = $2",
                &[p.into(), existing.id.into()],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn list_skus(&self, t: &Tenant, product_key: String, q: ListQuery) -> Result<(Vec<Sku>, i64)> {
        let p = t.project_id().to_string();
        self.read(move |c| {
            let prod: Product = docs::get(c, &PRODUCTS, &p, &product_key)?;
            docs::list(c, &SKUS, &p, &q, &[], &[("product_id", prod.id.into())])
        })
        .await
    }
}

/// Upserts one imported product, with the checks of `POST /v1/products` and the
/// project's product schema (read once per batch). A new product needs a name. With
/// `merge_metadata` (CSV rows) the row's metadata properties are set on the product's
/// metadata instead of replacing it. `Ok(Err(_))`: the row was refused, nothing written.
pub fn import_product(
    c: &mut dyn Conn,
    p: &str,
    mut input: ProductInput,
    merge_metadata: bool,
    schema: Option<&MetadataSchema>,
) -> Result<std::result::Result<(), InvalidInput>> {
    if let Err(e) = input.validate() {
        return Ok(Err(e));
    }
    if let Err(e) = tessera_domain::import::require_key(&input.id, &input.source_id) {
        return Ok(Err(e));
    }
    if let Some(sid) = &input.source_id {
        c.lock_key(&format!("product:{p}:{sid}"))?;
    }
    let existing = match find_existing::<Product>(c, &PRODUCTS, p, &input.id, &input.source_id) {
        Ok(Some(e)) => docs::relock::<Product>(c, &PRODUCTS, p, &e.id)?,
        Ok(None) => None,
        Err(StoreError::NotFound { resource_type, id }) => {
            return Ok(Err(InvalidInput::payload(format!("{resource_type} {id} not found"))))
        }
        Err(e) => return Err(e),
    };
    let now = now_string();
    let prod = match existing {
        Some(e) => {
            merge_into(&mut input.metadata, &e.metadata, merge_metadata);
            input.update(&e, &now)
        }
        None if input.name.clone().flatten().is_none() => return Ok(Err(InvalidInput::payload("a new product needs a name"))),
        None => input.create(new_id("prod"), &now),
    };
    if let Err(e) = checked(schema, &prod.metadata)? {
        return Ok(Err(e));
    }
    save_product(c, p, &prod)?;
    Ok(Ok(()))
}

/// Upserts one imported SKU of the product named by `product_key` (id or source id),
/// with the checks of `POST /v1/products/{id}/skus` and the project's SKU schema.
pub fn import_sku(
    c: &mut dyn Conn,
    p: &str,
    product_key: &str,
    mut input: SkuInput,
    merge_metadata: bool,
    schema: Option<&MetadataSchema>,
) -> Result<std::result::Result<(), InvalidInput>> {
    if let Err(e) = input.validate() {
        return Ok(Err(e));
    }
    if input.source_id.is_none() {
        return Ok(Err(InvalidInput::payload("the row has no source_id")));
    }
    let Some(prod) = docs::find::<Product>(c, &PRODUCTS, p, product_key)? else {
        return Ok(Err(InvalidInput::payload(format!("product {product_key} not found"))));
    };
    if let Some(sid) = &input.source_id {
        c.lock_key(&format!("sku:{p}:{sid}"))?;
    }
    let existing = match find_existing::<Sku>(c, &SKUS, p, &input.id, &input.source_id)? {
        Some(e) => docs::relock::<Sku>(c, &SKUS, p, &e.id)?,
        None => None,
    };
    let now = now_string();
    let sku = match existing {
        Some(e) if e.product_id != prod.id => {
            return Ok(Err(InvalidInput::payload(format!(
                "SKU {} belongs to another product ({})",
                e.id, e.product_id
            ))))
        }
        Some(e) => {
            merge_into(&mut input.metadata, &e.metadata, merge_metadata);
            input.update(&e, &now)
        }
        None => input.create(new_id("sku"), prod.id.clone(), &now),
    };
    if let Err(e) = checked(schema, &sku.metadata)? {
        return Ok(Err(e));
    }
    save_sku(c, p, &sku)?;
    Ok(Ok(()))
}

fn merge_into(input: &mut Option<Option<Map<String, Value>>>, existing: &Map<String, Value>, merge: bool) {
    if !merge {
        return;
    }
    if let Some(Some(m)) = input.take() {
        let mut merged = existing.clone();
        merged.extend(m);
        *input = Some(Some(merged));
    }
}

/// The schema check and the size limit on metadata as it will be stored; a refusal is
/// the row's, anything else the storage's.
fn checked(schema: Option<&MetadataSchema>, metadata: &Map<String, Value>) -> Result<std::result::Result<(), InvalidInput>> {
    match crate::ops::metadata_schemas::check(schema, metadata) {
        Ok(()) => Ok(tessera_domain::customer::check_metadata("metadata", metadata)),
        Err(StoreError::Invalid(i)) => Ok(Err(i)),
        Err(e) => Err(e),
    }
}
