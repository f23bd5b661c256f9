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

/// The operations anyone may call, without a token: the operations endpoints.
const COMMON_PUBLIC: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Declares how every operation of `doc` is authorised: the `bearer` scheme (a
/// platform JWT, `Authorization: Bearer …`) for each, `internal` (the internal service
/// token) for `/internal/…`, none for the operations endpoints and for `public`
/// (`(method, path)`, method lower-case). Call it on a service's document; a test of the
/// gateway checks each declaration against the running platform.
pub fn secure(doc: &mut utoipa::openapi::OpenApi, public: &[(&str, &str)]) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer".to_owned(),
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A platform access token (a refresh token where the operation says so)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "internal".to_owned(),
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "INTERNAL_SERVICE_TOKEN, on the internal listener only",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in [
            ("get", item.get.as_mut()),
            ("post", item.post.as_mut()),
            ("put", item.put.as_mut()),
            ("patch", item.patch.as_mut()),
            ("delete", item.delete.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            let requirement = if path.starts_with("/internal/") {
                vec![SecurityRequirement::new("internal", Vec::<String>::new())]
            } else if COMMON_PUBLIC.contains(&path.as_str())
                || public.contains(&(method, path.as_str()))
            {
                // An empty requirement: no authorisation.
                vec![SecurityRequirement::default()]
            } else {
                vec![SecurityRequirement::new("bearer", Vec::<String>::new())]
            };
            operation.security = Some(requirement);
        }
    }
}
