//! Tenant names and the database names derived from them.
//!
//! A tenant database name is `tenant_<slug>_<8 hex>`, made only of `[a-z0-9_]` and at most
//! 63 bytes (PostgreSQL's identifier limit), whatever the tenant was called. Because the
//! character set excludes quotes, the quoted identifier built by
//! [`TenantDatabaseName::quoted`] is always safe to splice into DDL.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_TENANT_NAME_CHARS: usize = 255;
const DB_PREFIX: &str = "tenant_";
const SUFFIX_HEX_LEN: usize = 8;
/// PostgreSQL truncates identifiers longer than 63 bytes (NAMEDATALEN - 1).
pub const MAX_DATABASE_NAME_BYTES: usize = 63;
/// What is left for the slug: 63 - "tenant_" - "_" - 8 hex.
pub const MAX_SLUG_BYTES: usize = MAX_DATABASE_NAME_BYTES - DB_PREFIX.len() - 1 - SUFFIX_HEX_LEN;
/// Slug of a name that has no usable character at all (emoji only, punctuation only).
const FALLBACK_SLUG: &str = "tenant";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantNameError {
    #[error("name is required")]
    Empty,
    #[error("name must be at most {MAX_TENANT_NAME_CHARS} characters")]
    TooLong,
    #[error("name must not contain control or invisible formatting characters")]
    ControlCharacters,
}

/// A tenant's display name: trimmed, 1–255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(input: &str) -> Result<Self, TenantNameError> {
        let name = input.trim();
        if crate::is_blank(name) {
            return Err(TenantNameError::Empty);
        }
        if name.chars().count() > MAX_TENANT_NAME_CHARS {
            return Err(TenantNameError::TooLong);
        }
        if name.chars().any(crate::is_hidden_or_control) {
            return Err(TenantNameError::ControlCharacters);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        TenantName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The readable part of a database name: `[a-z0-9_]`, 1–47 bytes, no leading, trailing
/// or doubled underscore.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Lowercases the name and reduces it to `[a-z0-9_]`: every run of other characters
    /// becomes one `_`; the result is cut to fit the database-name limit.
    pub fn from_name(name: &TenantName) -> Self {
        let mut slug = String::with_capacity(MAX_SLUG_BYTES);
        for c in name.as_str().chars().flat_map(char::to_lowercase) {
            if slug.len() >= MAX_SLUG_BYTES {
                break;
            }
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('_') {
                slug.push('_');
            }
        }
        while slug.ends_with('_') {
            slug.pop();
        }
        if slug.is_empty() {
            slug.push_str(FALLBACK_SLUG);
        }
        Self(slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tenant database name (expected tenant_<slug>_<8 hex>, [a-z0-9_], at most 63 bytes)")]
pub struct DatabaseNameError;

/// `tenant_<slug>_<8 hex>`: the only kind of database name the platform creates or drops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantDatabaseName(String);

impl TenantDatabaseName {
    /// A new name for a tenant, with a random suffix so equal names never collide.
    pub fn generate(name: &TenantName) -> Self {
        let random = uuid::Uuid::new_v4();
        let bytes = random.as_bytes();
        let suffix = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        Self::from_parts(&TenantSlug::from_name(name), suffix)
    }

    /// A name from a slug and a chosen suffix (deterministic; for tests and tooling).
    pub fn from_parts(slug: &TenantSlug, suffix: u32) -> Self {
        Self(format!("{DB_PREFIX}{}_{suffix:08x}", slug.as_str()))
    }

    /// Accepts a stored name only if it has exactly the generated shape.
    pub fn parse(input: &str) -> Result<Self, DatabaseNameError> {
        let valid = input.len() <= MAX_DATABASE_NAME_BYTES
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && input.strip_prefix(DB_PREFIX).is_some_and(|rest| {
                rest.len() > SUFFIX_HEX_LEN + 1 && {
                    let (slug, suffix) = rest.split_at(rest.len() - SUFFIX_HEX_LEN - 1);
                    !slug.is_empty()
                        && suffix.starts_with('_')
                        && suffix[1..].bytes().all(|b| b.is_ascii_hexdigit())
                }
            });
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(DatabaseNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a double-quoted SQL identifier.
    pub fn quoted(&self) -> String {
        // The character set excludes `"`, so no escaping is needed; assert it anyway.
        debug_assert!(!self.0.contains('"'));
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for TenantDatabaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantDatabaseName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        TenantDatabaseName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_name_for(input: &str) -> Option<TenantDatabaseName> {
        TenantName::parse(input)
            .ok()
            .map(|name| TenantDatabaseName::generate(&name))
    }

    fn assert_safe(db: &TenantDatabaseName, input: &str) {
        let s = db.as_str();
        assert!(
            s.len() <= MAX_DATABASE_NAME_BYTES,
            "{input:?} gave {s:?} ({} bytes)",
            s.len()
        );
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{input:?} gave {s:?}"
        );
        assert!(s.starts_with("tenant_"), "{s}");
        assert_eq!(
            TenantDatabaseName::parse(s).as_ref(),
            Ok(db),
            "generated name must parse"
        );
    }

    #[test]
    fn hostile_tenant_names_give_safe_database_names() {
        let thousand = "x".repeat(1000);
        let thousand_emoji = "🎉".repeat(1000);
        let longest = "x".repeat(255);
        let hostile = [
            "Acme Corp",
            "\"; DROP DATABASE saas_platform; --",
            "Robert'); DROP TABLE tenants;--",
            "a\"b'c`d",
            "🎉🎉🎉",
            "Ünïcödé GmbH",
            "日本語の会社",
            "   spaced    out   ",
            "___",
            "ALLCAPS",
            "with/slash\\back",
            "$1 OR 1=1",
            "tenant_x_deadbeef",
            "%_%",
            thousand.as_str(),
            longest.as_str(),
        ];
        for input in hostile {
            if let Some(db) = db_name_for(input) {
                assert_safe(&db, input);
            }
        }
        // Names that are too long as names are refused before any database name is made.
        assert_eq!(TenantName::parse(&thousand), Err(TenantNameError::TooLong));
        assert_eq!(
            TenantName::parse(&thousand_emoji),
            Err(TenantNameError::TooLong)
        );
        // But the slug is safe for any string at all.
        for input in [thousand.as_str(), thousand_emoji.as_str()] {
            let name = TenantName(input.to_owned());
            assert_safe(&TenantDatabaseName::generate(&name), input);
        }
    }

    #[test]
    fn every_single_character_name_gives_a_safe_database_name() {
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            let input = format!("a{c}b{c}");
            if let Some(db) = db_name_for(&input) {
                assert_safe(&db, &input);
            }
        }
    }

    #[test]
    fn slugs_are_readable() {
        let slug = |s: &str| TenantSlug::from_name(&TenantName::parse(s).expect("valid name"));
        assert_eq!(slug("Acme Corp").as_str(), "acme_corp");
        assert_eq!(slug("  Acme -- Corp!! ").as_str(), "acme_corp");
        assert_eq!(slug("\"; DROP DATABASE x; --").as_str(), "drop_database_x");
        assert_eq!(slug("🎉").as_str(), "tenant");
        assert_eq!(slug(&"ab".repeat(100)).as_str().len(), MAX_SLUG_BYTES);
        assert!(!slug(&format!("{}-z", "a".repeat(MAX_SLUG_BYTES - 1)))
            .as_str()
            .ends_with('_'));
    }

    #[test]
    fn database_names_have_the_documented_shape() {
        let slug = TenantSlug::from_name(&TenantName::parse("Acme").expect("valid"));
        let db = TenantDatabaseName::from_parts(&slug, 0xdead_beef);
        assert_eq!(db.as_str(), "tenant_acme_deadbeef");
        assert_eq!(db.quoted(), "\"tenant_acme_deadbeef\"");
        let a = TenantDatabaseName::generate(&TenantName::parse("Acme").expect("valid"));
        let b = TenantDatabaseName::generate(&TenantName::parse("Acme").expect("valid"));
        assert_ne!(a, b, "equal names get distinct databases");
    }

    #[test]
    fn only_generated_shapes_parse() {
        for bad in [
            "",
            "postgres",
            "saas_platform",
            "tenant_",
            "tenant__deadbeef",
            "tenant_acme_deadbee",
            "tenant_acme_DEADBEEF",
            "tenant_acme_deadbeeg",
            "tenant_acme-x_deadbeef",
            "tenant_a\"b_deadbeef",
            &format!("tenant_{}_deadbeef", "a".repeat(48)),
        ] {
            assert_eq!(
                TenantDatabaseName::parse(bad),
                Err(DatabaseNameError),
                "{bad:?}"
            );
        }
        assert!(TenantDatabaseName::parse(&format!("tenant_{}_deadbeef", "a".repeat(47))).is_ok());
    }

    #[test]
    fn tenant_names_are_validated() {
        assert_eq!(TenantName::parse("  "), Err(TenantNameError::Empty));
        assert_eq!(
            TenantName::parse("a\nb"),
            Err(TenantNameError::ControlCharacters)
        );
        assert_eq!(
            TenantName::parse("evil \u{202E}moc.kcatta"),
            Err(TenantNameError::ControlCharacters)
        );
        assert_eq!(
            TenantName::parse(" Acme ").map(|n| n.0),
            Ok("Acme".to_owned())
        );
        assert!(TenantName::parse(&"é".repeat(255)).is_ok());
    }
}
