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

/// Completes what each operation's annotation leaves implicit, so the document says
/// everything a caller can receive (`docs/DESIGN-NOTES.md`, "The contract"):
///
/// - **the success envelope**: a 2xx JSON answer is `{success: true, message, data}`
///   with the annotation's schema as `data` (required when the annotation gives one),
///   except for the operations in `bare` and `/internal/…`, which answer their schema
///   as it is (the Flask original's token and discovery shapes);
/// - **the statuses every operation of its kind can answer**, each with the error
///   envelope: 401 where a token is required, 400 where the request has parameters or
///   a body, 404 where the path names something, 413 and 415 where there is a body,
///   503 everywhere (a database, Redis or a peer service is unavailable);
/// - a description on every answer (OpenAPI 3.1 requires one).
///
/// Call it after [`secure`], which it reads.
pub fn describe(doc: &mut utoipa::openapi::OpenApi, bare: &[(&str, &str)]) {
    let Ok(mut value) = serde_json::to_value(&*doc) else {
        return;
    };
    if let Some(paths) = value.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            let path_params = item
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|p| p.iter().any(|p| p["in"] == "path"));
            for (method, operation) in item.iter_mut() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let internal = path.starts_with("/internal/");
                let enveloped = !internal && !bare.contains(&(method.as_str(), path.as_str()));
                complete_operation(operation, path, enveloped, path_params);
            }
        }
    }
    match serde_json::from_value(value) {
        Ok(completed) => *doc = completed,
        Err(e) => panic!("the completed OpenAPI document no longer parses: {e}"),
    }
}

fn complete_operation(
    operation: &mut serde_json::Value,
    path: &str,
    enveloped: bool,
    path_params_on_item: bool,
) {
    use serde_json::{json, Value};
    // Page bounds, as `Page::parse` enforces them.
    if let Some(parameters) = operation["parameters"].as_array_mut() {
        for parameter in parameters.iter_mut() {
            let bounds = match (parameter["in"].as_str(), parameter["name"].as_str()) {
                (Some("query"), Some("page")) => (1, crate::pagination::MAX_PAGE, 1),
                (Some("query"), Some("per_page")) => (1, crate::pagination::MAX_PER_PAGE, 20),
                _ => continue,
            };
            parameter["schema"] = json!({
                "type": "integer", "format": "int64",
                "minimum": bounds.0, "maximum": bounds.1, "default": bounds.2,
            });
        }
    }
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has_path =
        path_params_on_item || path.contains('{') || parameters.iter().any(|p| p["in"] == "path");
    let has_query = parameters.iter().any(|p| p["in"] == "query");
    let body = operation.get("requestBody").is_some();
    let bearer = operation["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
    let internal = path.starts_with("/internal/");
    // Operation ids are the handlers' names, which repeat across services (`login`,
    // `list`): the tag makes them unique in the merged document (`sso_login`).
    if let (Some(tag), Some(id)) = (
        operation["tags"][0].as_str().map(|t| t.replace('-', "_")),
        operation["operationId"].as_str().map(str::to_owned),
    ) {
        if !id.starts_with(&format!("{tag}_")) {
            operation["operationId"] = json!(format!("{tag}_{id}"));
        }
    }
    let Some(responses) = operation.as_object_mut().and_then(|o| {
        o.entry("responses")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    }) else {
        return;
    };
    for (status, response) in responses.iter_mut() {
        if response["description"].as_str().is_none_or(str::is_empty) {
            response["description"] = json!(default_description(status));
        }
        if !enveloped || !status.starts_with('2') {
            continue;
        }
        let data = response
            .get("content")
            .and_then(|c| c.get("application/json"))
            .and_then(|c| c.get("schema"))
            .cloned();
        let other_content = response
            .get("content")
            .and_then(|c| c.as_object())
            .is_some_and(|c| c.keys().any(|k| k != "application/json"));
        if other_content {
            continue; // a download: the bytes, not JSON
        }
        let mut properties = json!({
            "success": {"type": "boolean", "enum": [true]},
            "message": {"type": "string"},
        });
        let mut required = vec![json!("success"), json!("message")];
        match data {
            Some(schema) => {
                properties["data"] = schema;
                required.push(json!("data"));
            }
            // Not described yet: some JSON object or list.
            None => properties["data"] = json!({"type": ["object", "array"]}),
        }
        response["content"] = json!({"application/json": {"schema": {
            "type": "object",
            "required": required,
            "properties": properties,
            "additionalProperties": false,
        }}});
    }
    let error = |description: &str| -> Value {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    let mut add = |status: &str, description: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| error(description));
    };
    if bearer {
        add(
            "401",
            "`unauthorized`, `invalid_token`, `token_expired`, `token_revoked`: no valid access token",
        );
    }
    if has_path || has_query || body {
        add(
            "400",
            "`validation_error` (`details` names each field), `invalid_pagination`, `bad_request`: the request is malformed",
        );
    }
    if has_path {
        add(
            "404",
            "`not_found`: no such resource, or not one the caller may see",
        );
    }
    if body {
        add("413", "`payload_too_large`: the body is over the limit");
        add(
            "415",
            "`unsupported_media_type`: the body is not of the documented content type",
        );
    }
    if !internal {
        add(
            "503",
            "`service_unavailable`: a database, Redis or another service is unavailable; retry later",
        );
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No content",
        "302" => "Found: a redirect",
        "400" => "Bad request",
        "401" => "Unauthorized",
        "403" => "Forbidden",
        "404" => "Not found",
        "409" => "Conflict",
        "410" => "Gone",
        "413" => "Payload too large",
        "415" => "Unsupported media type",
        "429" => "Too many requests",
        "503" => "Service unavailable",
        _ => "An answer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn doc() -> utoipa::openapi::OpenApi {
        serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/api/things/{id}": {
                    "put": {
                        "tags": ["things"],
                        "operationId": "update",
                        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                        "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                        "responses": {"200": {"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
                    }
                },
                "/api/things": {
                    "get": {
                        "tags": ["things"],
                        "operationId": "list",
                        "parameters": [{"name": "page", "in": "query", "required": false, "schema": {"type": "integer"}}],
                        "responses": {"200": {"description": "`data`: things"}}
                    }
                },
                "/api/token": {
                    "post": {
                        "tags": ["auth"],
                        "operationId": "token",
                        "responses": {"200": {"description": "", "content": {"application/json": {"schema": {"type": "object"}}}}}
                    }
                }
            }
        }))
        .expect("a document")
    }

    fn described() -> Value {
        let mut doc = doc();
        secure(&mut doc, &[("post", "/api/token")]);
        describe(&mut doc, &[("post", "/api/token")]);
        serde_json::to_value(&doc).expect("json")
    }

    #[test]
    fn success_answers_get_the_envelope_unless_bare() {
        let doc = described();
        let update = &doc["paths"]["/api/things/{id}"]["put"]["responses"]["200"];
        let schema = &update["content"]["application/json"]["schema"];
        assert_eq!(schema["required"], json!(["success", "message", "data"]));
        assert_eq!(
            schema["properties"]["data"]["$ref"],
            "#/components/schemas/Thing"
        );
        assert_eq!(schema["properties"]["success"]["enum"], json!([true]));
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(update["description"], "OK");
        // No schema given: `data` may be absent.
        let list = &doc["paths"]["/api/things"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        assert_eq!(list["required"], json!(["success", "message"]));
        // A bare operation keeps its own shape.
        let token = &doc["paths"]["/api/token"]["post"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        assert_eq!(token, &json!({"type": "object"}));
    }

    #[test]
    fn every_status_an_operation_can_answer_is_declared() {
        let doc = described();
        let statuses = |path: &str, method: &str| -> Vec<String> {
            doc["paths"][path][method]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect()
        };
        // A token, a path, a body.
        assert_eq!(
            statuses("/api/things/{id}", "put"),
            ["200", "400", "401", "404", "413", "415", "503"]
        );
        // A token and a query.
        assert_eq!(statuses("/api/things", "get"), ["200", "400", "401", "503"]);
        // Public, nothing to validate.
        assert_eq!(statuses("/api/token", "post"), ["200", "503"]);
        let error = &doc["paths"]["/api/things"]["get"]["responses"]["401"];
        assert_eq!(
            error["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }

    #[test]
    fn pages_are_bounded_and_operation_ids_unique() {
        let doc = described();
        let page = &doc["paths"]["/api/things"]["get"]["parameters"][0]["schema"];
        assert_eq!(page["minimum"], 1);
        assert_eq!(page["maximum"], crate::pagination::MAX_PAGE);
        assert_eq!(
            doc["paths"]["/api/things"]["get"]["operationId"],
            "things_list"
        );
        assert_eq!(
            doc["paths"]["/api/token"]["post"]["operationId"],
            "auth_token"
        );
    }
}
