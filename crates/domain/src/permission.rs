//! The permission matrix of docs/API.md as code. Every service asks `Role::allows` rather
//! than comparing roles itself, so the matrix lives in exactly one place.

use crate::Role;

/// Whether the caller owns the resource an action touches (documents carry an owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Own,
    Other,
}

/// Everything a member of a tenant may try to do inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the tenant, its members and its settings.
    ViewTenant,
    /// Rename the tenant.
    UpdateTenant,
    /// Deactivate or purge the tenant.
    DeleteTenant,
    /// Complete a failed provisioning.
    RetryProvisioning,
    /// Add members, change their roles, remove them.
    ManageMembers,
    /// Configure SSO for the tenant.
    ManageSso,
    /// Read the tenant's audit log.
    ViewAuditLog,
    /// Register and remove webhook endpoints.
    ManageWebhooks,
    /// List, read and download documents (including presigned URLs).
    ReadDocuments,
    /// Upload new documents.
    UploadDocument,
    /// Rename a document or change its mime type.
    UpdateDocument(Ownership),
    /// Delete a document.
    DeleteDocument(Ownership),
    /// List and read stored files and their statistics.
    ReadFiles,
    /// Delete an unreferenced stored file.
    DeleteFile,
}

impl Role {
    /// The permission matrix: viewer reads; user reads, uploads and manages its own
    /// documents; admin does everything.
    pub const fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::User => matches!(
                permission,
                ViewTenant
                    | ReadDocuments
                    | UploadDocument
                    | UpdateDocument(Ownership::Own)
                    | DeleteDocument(Ownership::Own)
                    | ReadFiles
            ),
            Role::Viewer => matches!(permission, ViewTenant | ReadDocuments | ReadFiles),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ownership::{Other, Own};
    use super::Permission::*;
    use crate::Role;

    /// One module per permission and one test per (permission, role) cell, so a failing
    /// cell names itself: `permission::tests::delete_document_other::user`.
    macro_rules! matrix {
        ($($name:ident: $permission:expr => admin $admin:literal, user $user:literal, viewer $viewer:literal;)*) => {
            $(
                mod $name {
                    use super::*;
                    #[test]
                    fn admin() {
                        assert_eq!(Role::Admin.allows($permission), $admin);
                    }
                    #[test]
                    fn user() {
                        assert_eq!(Role::User.allows($permission), $user);
                    }
                    #[test]
                    fn viewer() {
                        assert_eq!(Role::Viewer.allows($permission), $viewer);
                    }
                }
            )*
        };
    }

    matrix! {
        view_tenant: ViewTenant => admin true, user true, viewer true;
        update_tenant: UpdateTenant => admin true, user false, viewer false;
        delete_tenant: DeleteTenant => admin true, user false, viewer false;
        retry_provisioning: RetryProvisioning => admin true, user false, viewer false;
        manage_members: ManageMembers => admin true, user false, viewer false;
        manage_sso: ManageSso => admin true, user false, viewer false;
        view_audit_log: ViewAuditLog => admin true, user false, viewer false;
        manage_webhooks: ManageWebhooks => admin true, user false, viewer false;
        read_documents: ReadDocuments => admin true, user true, viewer true;
        upload_document: UploadDocument => admin true, user true, viewer false;
        update_document_own: UpdateDocument(Own) => admin true, user true, viewer false;
        update_document_other: UpdateDocument(Other) => admin true, user false, viewer false;
        delete_document_own: DeleteDocument(Own) => admin true, user true, viewer false;
        delete_document_other: DeleteDocument(Other) => admin true, user false, viewer false;
        read_files: ReadFiles => admin true, user true, viewer true;
        delete_file: DeleteFile => admin true, user false, viewer false;
    }
}
