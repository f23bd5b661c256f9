//! The OpenAPI parts every service shares (operations endpoints, the error envelope);
//! each service merges them into its own document, served at `/api-docs/openapi.json`.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use crate::health::{HealthBody, ReadyBody};
use crate::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    paths(crate::health::health, crate::health::ready, crate::health::metrics),
    components(schemas(HealthBody, ReadyBody, ErrorBody))
)]
struct CommonApi;

/// The operations endpoints and the error envelope.
pub fn common() -> utoipa::openapi::OpenApi {
    CommonApi::openapi()
}

/// A service's document with the common parts merged in, serialised once.
pub(crate) struct OpenApiJson(pub(crate) String);

pub(crate) async fn serve_openapi(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}
