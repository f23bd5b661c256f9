//! The success envelope of docs/API.md: `{"success": true, "message", "data"?}`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct SuccessBody<'a, T: Serialize> {
    pub success: bool,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// A success envelope with `data`.
pub fn success<T: Serialize>(status: StatusCode, message: &str, data: T) -> HttpResponse {
    HttpResponse::build(status).json(SuccessBody {
        success: true,
        message,
        data: Some(data),
    })
}
