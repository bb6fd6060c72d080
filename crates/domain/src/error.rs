use std::fmt;

/// A client mistake found while parsing input. It carries the Voucherify-style error key
/// and a message that says what was wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub key: &'static str,
    pub message: String,
    pub details: String,
}

impl InvalidInput {
    pub fn payload(details: impl Into<String>) -> Self {
        InvalidInput {
            key: "invalid_payload",
            message: "Invalid payload".into(),
            details: details.into(),
        }
    }

    pub fn param(details: impl Into<String>) -> Self {
        InvalidInput {
            key: "invalid_query_params",
            message: "Invalid query parameters".into(),
            details: details.into(),
        }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.details)
    }
}

impl std::error::Error for InvalidInput {}
