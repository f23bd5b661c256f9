//! Extractors that answer bad input with a 400 naming the field, never a 500:
//! [`Json`] (content type checked, unknown fields and type errors located by
//! `serde_path_to_error`), [`Query`], and the error handler for `web::Path`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{PathError, PayloadError};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldErrors};

/// Largest JSON body accepted (uploads are multipart and have their own limit).
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// A JSON request body. Request types should use `#[serde(deny_unknown_fields)]`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// Strips serde_json's " at line L column C" so the message reads as a field message.
fn without_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// serde names the Rust type it expected (`expected struct CreateTenant`, `expected
/// enum Role`): a client reads what JSON was expected instead.
fn without_type_names(message: &str) -> String {
    // Longest first: "tuple struct X" must not be read as "struct X".
    const KINDS: [(&str, &str); 5] = [
        ("tuple struct ", "a JSON array"),
        ("unit struct ", "null"),
        ("untagged enum ", "one of the accepted values"),
        ("struct ", "a JSON object"),
        ("enum ", "one of the accepted values"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = KINDS
            .iter()
            .filter_map(|(kind, json)| rest.find(kind).map(|at| (at, *kind, *json)))
            .min_by_key(|(at, kind, _)| (*at, std::cmp::Reverse(kind.len())));
        let Some((at, kind, json)) = next else {
            break;
        };
        let after = &rest[at + kind.len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        if name_len == 0 {
            out.push_str(kind);
        } else {
            out.push_str(json);
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

/// Turns a located serde_json error into field errors.
pub fn json_error_details(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldErrors {
    let inner = error.inner();
    if inner.is_syntax() || inner.is_eof() {
        return FieldErrors::single("body", format!("invalid JSON: {inner}"));
    }
    let path = error.path().to_string();
    if path.starts_with('[') {
        // A top-level array where an object was expected.
        return FieldErrors::single("body", "expected a JSON object");
    }
    let base = if path == "." { String::new() } else { path };
    let join = |field: &str| {
        if base.is_empty() {
            field.to_owned()
        } else {
            format!("{base}.{field}")
        }
    };
    let message = without_type_names(without_position(&inner.to_string()));
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(field) = quoted("unknown field `") {
        // The located path already ends at the unknown field.
        let key = if base == field || base.ends_with(&format!(".{field}")) {
            base.clone()
        } else {
            join(&field)
        };
        FieldErrors::single(key, "unknown field")
    } else if let Some(field) = quoted("missing field `") {
        FieldErrors::single(join(&field), "is required")
    } else {
        FieldErrors::single(
            if base.is_empty() {
                "body".to_owned()
            } else {
                base
            },
            message,
        )
    }
}

/// The message of a NUL character anywhere in the input: PostgreSQL's `text` cannot
/// hold one, so it is refused at the edge (a 400), never met as a 500.
pub const NUL_MESSAGE: &str = "must not contain NUL characters";

/// Where the first string (key or value) holding a NUL character is, in `value`
/// (`a.b[2].c`; the empty string for the top level).
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(at)
            } else {
                nul_in(item, &at)
            }
        }),
        _ => None,
    }
}

/// `\u0000` in JSON text, as an escape (an odd number of backslashes before it).
fn may_hold_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).enumerate().any(|(at, w)| {
        w.eq_ignore_ascii_case(b"\\u0000")
            && bytes[..at]
                .iter()
                .rev()
                .take_while(|b| **b == b'\\')
                .count()
                % 2
                == 0
    })
}

/// Parses a JSON body into `T`, locating any error; a NUL character in any string is a
/// 400 naming its field.
///
/// Every body of the API is a JSON object: a top-level array is refused, as serde would
/// otherwise read one as a struct's fields in order (`[null]` as `{"name": null}`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::validation("body", "must be a JSON object"));
    }
    if may_hold_nul(bytes) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
            if let Some(path) = nul_in(&value, "") {
                let field = if path.is_empty() {
                    "body".to_owned()
                } else {
                    path
                };
                return Err(ApiError::Validation(FieldErrors::single(
                    field,
                    NUL_MESSAGE,
                )));
            }
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| ApiError::Validation(json_error_details(&e)))?;
    deserializer
        .end()
        .map_err(|e| ApiError::validation("body", format!("invalid JSON: {e}")))?;
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = is_json(req);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(ApiError::UnsupportedMediaType(
                    "Content-Type must be application/json".into(),
                )
                .into());
            }
            let bytes = body.await.map_err(unreadable)?;
            if bytes.is_empty() {
                return Err(ApiError::validation("body", "a JSON body is required").into());
            }
            Ok(Json(parse_json(&bytes)?))
        })
    }
}

/// A body that could not be read: too large (413) or broken off (400).
fn unreadable(e: actix_web::Error) -> ApiError {
    match e.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            ApiError::PayloadTooLarge(format!("JSON body larger than {MAX_JSON_BYTES} bytes"))
        }
        _ => ApiError::BadRequest("could not read the request body".into()),
    }
}

/// A JSON body that may be left out: no body (or only white space) and `null` are
/// `None`, as the OpenAPI document's optional request bodies say; any other body must
/// be JSON (415 otherwise) and is read like [`Json`]. A function, not an extractor, so
/// a handler can do what must come first (a throttle) before the body is judged.
pub fn optional_json<T: DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType(
            "Content-Type must be application/json".into(),
        ));
    }
    parse_json::<Option<T>>(body)
}

/// Query-string parameters, located errors like [`Json`].
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query = req.query_string();
        if let Some(field) = nul_parameter(query) {
            return std::future::ready(Err(ApiError::Validation(FieldErrors::single(
                field,
                NUL_MESSAGE,
            ))
            .into()));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let result = serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.inner().to_string();
                let quoted = |prefix: &str| {
                    message
                        .strip_prefix(prefix)
                        .and_then(|r| r.split('`').next())
                        .map(str::to_owned)
                };
                let errors = if let Some(field) = quoted("unknown field `") {
                    FieldErrors::single(field, "unknown parameter")
                } else if let Some(field) = quoted("missing field `") {
                    FieldErrors::single(field, "is required")
                } else {
                    FieldErrors::single(
                        if path == "." {
                            "query".to_owned()
                        } else {
                            path
                        },
                        message,
                    )
                };
                ApiError::Validation(errors).into()
            });
        std::future::ready(result)
    }
}

/// The name of the first query parameter whose name or value holds a NUL character.
pub fn nul_parameter(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        .map(|(key, _)| {
            if key.is_empty() || key.contains('\0') {
                "query".to_owned()
            } else {
                key.into_owned()
            }
        })
}

/// Whether a raw path holds a NUL character, encoded or not.
pub fn path_has_nul(path: &str) -> bool {
    path.contains('\0')
        || path
            .as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// `web::PathConfig` error handler: a malformed id in a path is a 400, never a 500.
pub fn path_error(error: PathError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        PathError::Deserialize(e) => e.to_string(),
        _ => "malformed path".to_owned(),
    };
    ApiError::validation("path", message).into()
}

/// `web::JsonConfig` error handler, for code that uses actix's own `web::Json`.
pub fn actix_json_error(
    error: actix_web::error::JsonPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match error {
        E::ContentType => {
            ApiError::UnsupportedMediaType("Content-Type must be application/json".into())
        }
        E::Overflow { .. } | E::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge("JSON body too large".into())
        }
        E::Deserialize(e) => {
            ApiError::validation("body", without_position(&e.to_string()).to_owned())
        }
        _ => ApiError::BadRequest("could not read the request body".into()),
    }
    .into()
}

/// `web::QueryConfig` error handler.
pub fn actix_query_error(
    error: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::validation("query", error.to_string()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Body {
        name: String,
        count: u32,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Nested {
        flag: bool,
    }

    #[test]
    fn an_optional_json_body_may_be_absent_empty_or_null() {
        use actix_web::test::TestRequest;
        #[derive(Debug, serde::Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Body {
            token: Option<String>,
        }
        fn read(content_type: Option<&str>, body: &str) -> Result<Option<Body>, ApiError> {
            let mut request = TestRequest::post();
            if let Some(content_type) = content_type {
                request = request.insert_header((CONTENT_TYPE, content_type));
            }
            optional_json(&request.to_http_request(), body.as_bytes())
        }
        let status = |r: Result<Option<Body>, ApiError>| {
            actix_web::ResponseError::status_code(&r.expect_err("refused")).as_u16()
        };
        assert_eq!(read(None, "").expect("no body"), None);
        assert_eq!(read(None, "  \n").expect("white space"), None);
        let json = Some("application/json");
        assert_eq!(read(json, "null").expect("null"), None);
        assert_eq!(
            read(json, r#"{"token":"t"}"#).expect("a body"),
            Some(Body {
                token: Some("t".into())
            })
        );
        assert_eq!(status(read(Some("text/plain"), r#"{"token":"t"}"#)), 415);
        assert_eq!(status(read(None, r#"{"token":"t"}"#)), 415);
        assert_eq!(status(read(json, r#"{"other":1}"#)), 400);
        assert_eq!(status(read(json, "[1]")), 400);
    }

    fn fields(body: &str) -> Vec<(String, String)> {
        match parse_json::<Body>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => {
                let value = serde_json::to_value(&errors).expect("serialisable");
                value
                    .as_object()
                    .expect("object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v[0].as_str().unwrap_or_default().to_owned()))
                    .collect()
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            fields(r#"{"name":"a","count":1,"extra":1}"#),
            [("extra".into(), "unknown field".into())]
        );
        assert_eq!(
            fields(r#"{"name":"a"}"#),
            [("count".into(), "is required".into())]
        );
        let wrong = fields(r#"{"name":"a","count":"x"}"#);
        assert_eq!(wrong[0].0, "count");
        assert!(wrong[0].1.contains("invalid type"), "{wrong:?}");
        assert_eq!(
            fields(r#"{"name":"a","count":1,"nested":{"flag":true,"bad":1}}"#),
            [("nested.bad".into(), "unknown field".into())]
        );
        let syntax = fields(r#"{"name": "#);
        assert_eq!(syntax[0].0, "body");
        assert!(syntax[0].1.starts_with("invalid JSON"), "{syntax:?}");
        assert_eq!(fields("[1,2]")[0].0, "body");
        // serde reads a struct from an array of its fields; the API does not.
        assert_eq!(
            fields(r#" ["a", 1]"#),
            [("body".into(), "must be a JSON object".into())]
        );
        assert_eq!(fields(r#"{"name":"a","count":1} trailing"#)[0].0, "body");
        // No Rust type name reaches the client.
        let null = fields("null");
        assert_eq!(null[0].0, "body");
        assert!(null[0].1.ends_with("expected a JSON object"), "{null:?}");
        assert!(!null[0].1.contains("struct"), "{null:?}");
        assert_eq!(
            without_type_names("invalid type: string \"x\", expected struct Inner_1 here"),
            "invalid type: string \"x\", expected a JSON object here"
        );
        assert_eq!(
            without_type_names("invalid type: integer `5`, expected enum Role"),
            "invalid type: integer `5`, expected one of the accepted values"
        );
        assert_eq!(
            without_type_names("expected tuple struct Pair or unit struct Nothing"),
            "expected a JSON array or null"
        );
        assert_eq!(
            without_type_names("data did not match any variant of untagged enum Body"),
            "data did not match any variant of one of the accepted values"
        );
    }

    #[test]
    fn nul_characters_are_refused_naming_their_field() {
        let named = |body: &str| match parse_json::<serde_json::Value>(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => {
                errors.fields().map(str::to_owned).collect::<Vec<_>>()
            }
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(named(r#"{"name":"a\u0000b"}"#), ["name"]);
        assert_eq!(named(r#"{"a":{"list":["x","\u0000"]}}"#), ["a.list[1]"]);
        assert_eq!(named(r#"{"k\u0000":1}"#), ["k\u{0}"]);
        assert_eq!(named(r#""\u0000""#), ["body"]);
        // An escaped backslash followed by "u0000" is six characters, not a NUL.
        assert!(parse_json::<serde_json::Value>(br#"{"name":"a\\u0000"}"#).is_ok());
        assert_eq!(
            nul_parameter("page=1&filename=%00"),
            Some("filename".to_owned())
        );
        assert_eq!(nul_parameter("a%00=1"), Some("query".to_owned()));
        assert_eq!(nul_parameter("filename=%2500"), None);
        assert!(path_has_nul("/api/x%00y"));
        assert!(!path_has_nul("/api/x%2500"));
    }
}
