//! An email address that is trimmed, lowercased (ASCII rules only: a Unicode fold would
//! turn the Kelvin sign into `k` and let one address pose as another) and plausibly
//! deliverable.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Maximum stored length (docs/API.md).
pub const MAX_EMAIL_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("email is required")]
    Empty,
    #[error("email must be at most {MAX_EMAIL_LEN} characters")]
    TooLong,
    #[error("email is not a valid address")]
    Invalid,
}

/// A normalised email address: only [`Email::parse`] builds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Trims and lowercases, then checks the shape `local@domain.tld` with a conservative
    /// character set (no spaces, no control characters, no quoted local parts).
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let email = input.trim().to_ascii_lowercase();
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = email.split_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && domain.len() <= 253
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
            && labels
                .last()
                .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_alphabetic()) && tld.len() >= 2);
        if local_ok && domain_ok {
            Ok(Self(email))
        } else {
            Err(EmailError::Invalid)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact domain (after `@`), used for SSO domain matching.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_is_folded_with_ascii_rules_only() {
        assert_eq!(
            Email::parse(" Kelvin@Example.COM ")
                .expect("valid")
                .as_str(),
            "kelvin@example.com"
        );
        // The Kelvin sign (U+212A) folds to `k` under Unicode rules: refused, not folded.
        assert_eq!(
            Email::parse("\u{212A}elvin@example.com"),
            Err(EmailError::Invalid)
        );
        assert_eq!(
            Email::parse("kelvin@\u{212A}.com"),
            Err(EmailError::Invalid)
        );
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Alice.Smith+tag@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "alice.smith+tag@example.com");
        assert_eq!(email.domain(), "example.com");
    }

    #[test]
    fn bad_emails_are_refused() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@@example.com",
            "a@-example.com",
            "a@example..com",
            ".a@example.com",
            "a..b@example.com",
            "a@example.c0m",
            "\"quoted\"@example.com",
            "a@example.com\u{0}",
            "ünï@example.com",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn deserialising_validates() {
        assert!(serde_json::from_str::<Email>("\"not an email\"").is_err());
        let ok: Email = serde_json::from_str("\"Bob@Example.org\"").expect("valid");
        assert_eq!(ok.as_str(), "bob@example.org");
    }
}
