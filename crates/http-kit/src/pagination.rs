//! `page` (≥ 1, default 1) and `per_page` (1–100, default 20), validated together, and
//! the `pagination` object of list answers.

use crate::{ApiError, FieldErrors};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub fn parse(page: Option<i64>, per_page: Option<i64>) -> Result<Self, ApiError> {
        let (page, per_page) = (page.unwrap_or(1), per_page.unwrap_or(20));
        let mut errors = FieldErrors::new();
        if page < 1 {
            errors.add("page", "must be at least 1");
        }
        if !(1..=100).contains(&per_page) {
            errors.add("per_page", "must be between 1 and 100");
        }
        errors.into_result()?;
        Ok(Self { page, per_page })
    }

    pub fn offset(self) -> i64 {
        (self.page - 1) * self.per_page
    }

    pub fn describe(self, total: i64) -> Value {
        json!({"page": self.page, "per_page": self.per_page, "total": total, "pages": (total + self.per_page - 1) / self.per_page})
    }
}
