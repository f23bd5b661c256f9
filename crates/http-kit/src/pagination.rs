//! `page` (1 to [`MAX_PAGE`], default 1) and `per_page` (1–100, default 20), validated
//! together (400 `invalid_pagination` naming the field), and the `pagination` object of
//! list answers. The offset of every accepted page fits PostgreSQL's `OFFSET` (a
//! `bigint`) with room to spare.

use crate::{ApiError, FieldErrors};
use serde_json::Value;

/// The highest page number accepted (at 100 per page, a hundred million rows in).
pub const MAX_PAGE: i64 = 1_000_000;
/// The largest page size.
pub const MAX_PER_PAGE: i64 = 100;

/// The `pagination` object of list answers: the page given, its size, and the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Pagination {
    page: i64,
    per_page: i64,
    /// Items in all pages.
    total: i64,
    pages: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub fn parse(page: Option<i64>, per_page: Option<i64>) -> Result<Self, ApiError> {
        let (page, per_page) = (page.unwrap_or(1), per_page.unwrap_or(20));
        let mut errors = FieldErrors::new();
        if !(1..=MAX_PAGE).contains(&page) {
            errors.add("page", format!("must be between 1 and {MAX_PAGE}"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            errors.add("per_page", format!("must be between 1 and {MAX_PER_PAGE}"));
        }
        if errors.is_empty() {
            Ok(Self { page, per_page })
        } else {
            Err(ApiError::InvalidPagination(errors))
        }
    }

    pub fn offset(self) -> i64 {
        (self.page - 1) * self.per_page
    }

    /// The `pagination` object of this page when `total` items exist.
    pub fn pagination(self, total: i64) -> Pagination {
        Pagination {
            page: self.page,
            per_page: self.per_page,
            total,
            pages: (total + self.per_page - 1) / self.per_page,
        }
    }

    /// [`Page::pagination`] as JSON.
    pub fn describe(self, total: i64) -> Value {
        serde_json::to_value(self.pagination(total)).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_page_is_accepted_with_a_safe_offset_or_refused_naming_the_field(
            page in proptest::option::of(any::<i64>()),
            per_page in proptest::option::of(any::<i64>()),
        ) {
            match Page::parse(page, per_page) {
                Ok(p) => {
                    prop_assert!((1..=MAX_PAGE).contains(&p.page));
                    prop_assert!((1..=MAX_PER_PAGE).contains(&p.per_page));
                    let offset = (p.page - 1).checked_mul(p.per_page);
                    prop_assert_eq!(offset, Some(p.offset()));
                    prop_assert!(p.offset() >= 0);
                }
                Err(ApiError::InvalidPagination(fields)) => {
                    let named: Vec<&str> = fields.fields().collect();
                    let page_bad = page.is_some_and(|p| !(1..=MAX_PAGE).contains(&p));
                    let per_page_bad = per_page.is_some_and(|p| !(1..=MAX_PER_PAGE).contains(&p));
                    prop_assert_eq!(named.contains(&"page"), page_bad);
                    prop_assert_eq!(named.contains(&"per_page"), per_page_bad);
                }
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn the_edges() {
        assert!(Page::parse(Some(MAX_PAGE), Some(MAX_PER_PAGE)).is_ok());
        assert!(Page::parse(Some(MAX_PAGE + 1), None).is_err());
        assert!(Page::parse(Some(i64::MAX), Some(100)).is_err());
        assert!(Page::parse(Some(0), None).is_err());
        assert_eq!(
            Page::parse(None, None).expect("defaults"),
            Page {
                page: 1,
                per_page: 20
            }
        );
    }
}
