//! Domain operations, each written once against `Conn`.

pub mod customers;
pub mod docs;
pub mod idempotency;
pub mod orders;
pub mod org;
pub mod products;
