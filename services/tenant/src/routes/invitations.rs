//! Invitations by email: `/api/tenants/{id}/invitations` (admins: invite, list the
//! pending ones, revoke) and `/api/invitations` (the public preview of a link, and
//! accepting it signed in). The work is in `crate::invitations`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::{Permission, TenantId};
use http_kit::identity::{Authenticated, TenantMember};
use http_kit::{success, ApiError, ClientIp, Json, Page, Query};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::invitations::{parse_request, Invitation, Invitations, Preview};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    /// The address to invite (normalised: trimmed, lower-cased).
    #[schema(value_type = String, required = true, format = Email, min_length = 3, max_length = 255)]
    email: Option<String>,
    /// The role the membership gets.
    #[schema(value_type = domain::Role, required = true)]
    role: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The token of the invitation's link.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{43}$")]
    token: Option<String>,
}

/// Invite an address to the tenant (admin): it is mailed a link to
/// `{PUBLIC_APP_URL}/invitations/accept?token=…`, valid `INVITATION_TTL_SECS`. Inviting
/// an address with a pending invitation sends that invitation again (same id; a new
/// token, expiry, role and inviter; the earlier link stops working).
#[utoipa::path(post, path = "/api/tenants/{id}/invitations", tag = "invitations", operation_id = "create_invitation",
    params(("id" = String, Path, format = Uuid)),
    request_body = NewInvitation,
    responses((status = 201, description = "`data`: the invitation", body = Invitation),
              (status = 400, description = "`validation_error` naming `email` or `role`", body = http_kit::ErrorBody),
              (status = 403, description = "not an admin", body = http_kit::ErrorBody),
              (status = 404, description = "no such tenant, or not a member", body = http_kit::ErrorBody),
              (status = 409, description = "`conflict`: the address belongs to a member; `invitation_limit_reached`: too many pending", body = http_kit::ErrorBody),
              (status = 429, description = "`rate_limited`", body = http_kit::ErrorBody)))]
pub async fn create(
    app: web::Data<App>,
    invitations: web::Data<Invitations>,
    member: TenantMember,
    body: Json<NewInvitation>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let body = body.into_inner();
    let (email, role) = parse_request(body.email.as_deref(), body.role.as_deref())?;
    let sent = invitations
        .invite(&app, member.user_id, member.tenant_id, email, role)
        .await?;
    let message = if sent.refreshed {
        "Invitation sent again"
    } else {
        "Invitation sent"
    };
    Ok(success(StatusCode::CREATED, message, sent.invitation))
}

/// The tenant's pending invitations that have not expired, most recently sent first
/// (admin; `per_page` 1–100).
#[utoipa::path(get, path = "/api/tenants/{id}/invitations", tag = "invitations", operation_id = "list_invitations",
    params(("id" = String, Path, format = Uuid), ("page" = Option<i64>, Query),
           ("per_page" = Option<i64>, Query)),
    responses((status = 200, description = "`data`: {invitations: [Invitation], pagination}", body = InvitationList),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn list(
    app: web::Data<App>,
    invitations: web::Data<Invitations>,
    member: TenantMember,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let query = query.into_inner();
    let paging = Page::parse(query.page, query.per_page)?;
    let (list, total) = invitations.list(&app, member.tenant_id, paging).await?;
    Ok(success(
        StatusCode::OK,
        "Invitations retrieved",
        json!({"invitations": list, "pagination": paging.describe(total)}),
    ))
}

/// Revoke a pending invitation (admin): its link stops working. 404 if the tenant has
/// no pending invitation of this id.
#[utoipa::path(delete, path = "/api/tenants/{id}/invitations/{invitation_id}", tag = "invitations", operation_id = "revoke_invitation",
    params(("id" = String, Path, format = Uuid), ("invitation_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "Revoked", body = InvitationRevoked), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn revoke(
    app: web::Data<App>,
    invitations: web::Data<Invitations>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let (_, id) = path.into_inner();
    invitations
        .revoke(&app, member.user_id, member.tenant_id, id)
        .await?;
    Ok(success(
        StatusCode::OK,
        "Invitation revoked",
        json!({"id": id, "tenant_id": member.tenant_id}),
    ))
}

/// What an invitation link invites to (public; rate-limited per client address): the
/// tenant's name, the role, the inviter's name and the expiry, nothing else.
#[utoipa::path(get, path = "/api/invitations/{token}", tag = "invitations", operation_id = "preview_invitation",
    params(("token" = String, Path, pattern = "^[A-Za-z0-9_-]{43}$", description = "The token of the invitation link")),
    responses((status = 200, description = "`data`: the preview", body = Preview),
              (status = 404, description = "unknown, used or revoked", body = http_kit::ErrorBody),
              (status = 410, description = "`token_expired`", body = http_kit::ErrorBody),
              (status = 429, body = http_kit::ErrorBody)))]
pub async fn preview(
    app: web::Data<App>,
    invitations: web::Data<Invitations>,
    token: web::Path<String>,
    client: ClientIp,
) -> Result<HttpResponse, ApiError> {
    let preview = invitations
        .preview(&app, &token, client.0.as_deref())
        .await?;
    Ok(success(StatusCode::OK, "Invitation", preview))
}

/// Accept an invitation (signed in): the account's email must be the invited address,
/// verified. The membership starts at once; the link is used up.
#[utoipa::path(post, path = "/api/invitations/accept", tag = "invitations", operation_id = "accept_invitation",
    request_body = AcceptInvitation,
    responses((status = 200, description = "`data`: the membership", body = clients::tenant::Membership),
              (status = 400, body = http_kit::ErrorBody), (status = 401, body = http_kit::ErrorBody),
              (status = 403, description = "`invitation_email_mismatch` or `email_not_verified`", body = http_kit::ErrorBody),
              (status = 404, description = "unknown, used or revoked", body = http_kit::ErrorBody),
              (status = 409, description = "a member already", body = http_kit::ErrorBody),
              (status = 410, description = "`token_expired`", body = http_kit::ErrorBody),
              (status = 429, body = http_kit::ErrorBody)))]
pub async fn accept(
    app: web::Data<App>,
    invitations: web::Data<Invitations>,
    caller: Authenticated,
    client: ClientIp,
    body: Json<AcceptInvitation>,
) -> Result<HttpResponse, ApiError> {
    let membership = invitations
        .accept(
            &app,
            caller.user_id,
            body.token.as_deref(),
            client.0.as_deref(),
        )
        .await?;
    Ok(success(StatusCode::OK, "Invitation accepted", membership))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of the invitation list.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InvitationList {
    invitations: Vec<crate::invitations::Invitation>,
    pagination: http_kit::pagination::Pagination,
}

/// `data` of a revocation.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InvitationRevoked {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = Uuid)]
    tenant_id: String,
}
