//! Domain operations, each written once against `Conn`.

pub mod activity;
pub mod async_actions;
pub mod audit;
pub mod categories;
pub mod customers;
pub mod docs;
pub mod erasure;
pub mod events;
pub mod exports;
pub mod idempotency;
pub mod metadata_schemas;
pub mod orders;
pub mod org;
pub mod outbox;
pub mod products;
pub mod promotions;
pub mod publications;
pub mod redemptions;
pub mod rules;
pub mod segments;
pub mod stacking_rules;
pub mod stacks;
pub mod views;
pub mod vouchers;
