//! List query parameters shared by every list endpoint, parsed once with their caps.

use crate::error::InvalidInput;
use crate::limits::{MAX_DATE_RANGE_DAYS, MAX_PAGE, MAX_PAGE_SIZE};
use crate::time;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    SourceId,
    Name,
}

impl SortField {
    pub fn column(self) -> &'static str {
        match self {
            SortField::CreatedAt => "created_at",
            SortField::UpdatedAt => "updated_at",
            SortField::SourceId => "source_id",
            SortField::Name => "name",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: u32,
    pub page: u32,
    pub sort: SortField,
    pub descending: bool,
    /// Whether the caller chose the order; `starting_after` reads differently when it did.
    pub sort_explicit: bool,
    pub created_before: Option<String>,
    pub created_after: Option<String>,
    pub updated_before: Option<String>,
    pub updated_after: Option<String>,
    pub starting_after: Option<String>,
    /// Resource-specific equality filters that passed the resource's allow-list.
    pub filters: BTreeMap<String, String>,
}

impl ListQuery {
    pub fn offset(&self) -> u64 {
        (self.page as u64 - 1) * self.limit as u64
    }
}

/// What a resource allows in its list query.
pub struct ListSpec {
    pub sorts: &'static [SortField],
    pub filters: &'static [&'static str],
    pub default_limit: u32,
}

fn parse_time(name: &str, raw: &str) -> Result<String, InvalidInput> {
    time::parse_lenient(raw)
        .map(time::format)
        .ok_or_else(|| InvalidInput::param(format!("'{name}' must be a date-time (RFC 3339), got '{raw}'")))
}

pub fn parse(spec: &ListSpec, params: &BTreeMap<String, String>) -> Result<ListQuery, InvalidInput> {
    let mut q = ListQuery {
        limit: spec.default_limit,
        page: 1,
        sort: SortField::CreatedAt,
        descending: true,
        sort_explicit: false,
        created_before: None,
        created_after: None,
        updated_before: None,
        updated_after: None,
        starting_after: None,
        filters: BTreeMap::new(),
    };
    for (name, raw) in params {
        match name.as_str() {
            "limit" => {
                q.limit = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|v| (1..=MAX_PAGE_SIZE).contains(v))
                    .ok_or_else(|| InvalidInput::param(format!("'limit' must be an integer from 1 to {MAX_PAGE_SIZE}")))?;
            }
            "page" => {
                q.page = raw
                    .parse::<u32>()
                    .ok()
                    .filter(|v| (1..=MAX_PAGE).contains(v))
                    .ok_or_else(|| InvalidInput::param(format!("'page' must be an integer from 1 to {MAX_PAGE}")))?;
            }
            "order" => {
                let (desc, field) = match raw.strip_prefix('-') {
                    Some(f) => (true, f),
                    None => (false, raw.as_str()),
                };
                let sort = spec.sorts.iter().copied().find(|s| s.column() == field).ok_or_else(|| {
                    let allowed: Vec<_> = spec.sorts.iter().map(|s| s.column()).collect();
                    InvalidInput::param(format!("'order' must be one of {} (prefix '-' for descending)", allowed.join(", ")))
                })?;
                q.sort = sort;
                q.descending = desc;
                q.sort_explicit = true;
            }
            "created_at[before]" => q.created_before = Some(parse_time(name, raw)?),
            "created_at[after]" => q.created_after = Some(parse_time(name, raw)?),
            "updated_at[before]" => q.updated_before = Some(parse_time(name, raw)?),
            "updated_at[after]" => q.updated_after = Some(parse_time(name, raw)?),
            "start_date" => q.created_after = Some(parse_time(name, raw)?),
            "end_date" => q.created_before = Some(parse_time(name, raw)?),
            "starting_after" => q.starting_after = Some(parse_time(name, raw)?),
            other if spec.filters.contains(&other) => {
                if raw.len() > crate::limits::MAX_ID_LEN {
                    return Err(InvalidInput::param(format!(
                        "'{other}' is longer than {} characters",
                        crate::limits::MAX_ID_LEN
                    )));
                }
                q.filters.insert(other.to_string(), raw.clone());
            }
            // Unknown parameters are ignored, as Voucherify does, so newer clients keep working.
            _ => {}
        }
    }
    check_range("created_at", &q.created_after, &q.created_before)?;
    check_range("updated_at", &q.updated_after, &q.updated_before)?;
    Ok(q)
}

fn check_range(name: &str, after: &Option<String>, before: &Option<String>) -> Result<(), InvalidInput> {
    if let (Some(a), Some(b)) = (after, before) {
        let (Some(a), Some(b)) = (time::parse_lenient(a), time::parse_lenient(b)) else {
            return Ok(());
        };
        if b < a {
            return Err(InvalidInput::param(format!(
                "'{name}[before]' must not be earlier than '{name}[after]'"
            )));
        }
        let span_secs = b.as_second() - a.as_second();
        if span_secs > MAX_DATE_RANGE_DAYS * 86_400 {
            return Err(InvalidInput::param(format!(
                "the {name} range may span at most {MAX_DATE_RANGE_DAYS} days; split the query"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: ListSpec = ListSpec {
        sorts: &[SortField::CreatedAt, SortField::UpdatedAt],
        filters: &["email"],
        default_limit: 10,
    };

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let q = parse(&SPEC, &BTreeMap::new()).expect("valid");
        assert_eq!((q.limit, q.page, q.descending), (10, 1, true));
    }

    #[test]
    fn caps_are_enforced() {
        assert!(parse(&SPEC, &params(&[("limit", "101")])).is_err());
        assert!(parse(&SPEC, &params(&[("limit", "0")])).is_err());
        assert!(parse(&SPEC, &params(&[("page", "101")])).is_err());
        assert!(parse(&SPEC, &params(&[("order", "source_id")])).is_err());
        assert!(parse(
            &SPEC,
            &params(&[
                ("created_at[after]", "2020-01-01T00:00:00Z"),
                ("created_at[before]", "2024-01-01T00:00:00Z")
            ])
        )
        .is_err());
        assert!(parse(
            &SPEC,
            &params(&[
                ("created_at[after]", "2024-01-02T00:00:00Z"),
                ("created_at[before]", "2024-01-01T00:00:00Z")
            ])
        )
        .is_err());
    }

    #[test]
    fn filters_and_order() {
        let q = parse(&SPEC, &params(&[("email", "a@b.c"), ("order", "updated_at"), ("city", "x")])).expect("valid");
        assert_eq!(q.filters.get("email").map(String::as_str), Some("a@b.c"));
        assert!(!q.filters.contains_key("city"));
        assert_eq!((q.sort, q.descending), (SortField::UpdatedAt, false));
    }
}
