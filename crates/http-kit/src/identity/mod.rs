//! The identity layer every service uses: platform JWTs (EdDSA, `kid` in the header)
//! verified against auth's public keys, checked for revocation in Redis (fail closed),
//! and turned into the caller's user id by the [`Authenticated`] extractor; the
//! caller's role in a tenant by [`TenantMember`].

mod claims;
mod extract;
mod internal;
mod jwks;
mod keys;
mod tenant_role;
mod verifier;

pub use claims::{Claims, TokenType};
pub use extract::{bearer_token, Authenticated, Bearer};
pub use internal::{InternalCaller, InternalToken};
pub use jwks::{Jwk, Jwks};
pub use keys::{JwksClient, KeyError, KeyFuture, KeySource, StaticKeys};
pub use tenant_role::{
    announce_role_change, role_change_message, AuditFuture, CachedRoles, MemberAccess, RoleFuture,
    RoleLookup, TenantMember, BYPASS_AUDIT_EVERY, ROLE_CHANNEL,
};
pub use verifier::{TokenVerifier, VerifierSettings};
