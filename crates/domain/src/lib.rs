//! Pure domain logic of Tessera. Nothing here performs I/O or depends on a runtime, so
//! every rule can be unit- and property-tested in isolation and reused by every backend.

pub mod category;
pub mod checkout;
pub mod codes;
pub mod customer;
pub mod discount;
pub mod erasure;
pub mod error;
pub mod export;
pub mod ids;
pub mod import;
pub mod json;
pub mod limits;
pub mod list;
pub mod metadata_schema;
pub mod money;
pub mod net;
pub mod order;
pub mod product;
pub mod project;
pub mod promotion;
pub mod promotion_stack;
pub mod publication;
pub mod redemption;
pub mod rules;
pub mod secrets;
pub mod segment;
pub mod stacking;
pub mod time;
pub mod validity;
pub mod voucher;
pub mod webhook;

pub use error::InvalidInput;
