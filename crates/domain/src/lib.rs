//! Domain types shared by every crate and service: typed ids, roles and the permission
//! matrix, and values that can only exist when valid (email, tenant name, slug and
//! database name). No I/O and no async here.

mod email;
mod ids;
mod permission;
mod role;
mod tenant_name;
mod tenant_status;
mod text;

pub use email::{Email, EmailError, MAX_EMAIL_LEN};
pub use ids::{DocumentId, FileId, IdParseError, TenantId, UserId};
pub use permission::{Ownership, Permission};
pub use role::{Role, RoleParseError};
pub use tenant_name::{
    DatabaseNameError, TenantDatabaseName, TenantName, TenantNameError, TenantSlug,
    MAX_DATABASE_NAME_BYTES, MAX_SLUG_BYTES, MAX_TENANT_NAME_CHARS,
};
pub use tenant_status::{TenantStatus, TenantStatusError};
pub use text::{is_blank, is_hidden_or_control};
