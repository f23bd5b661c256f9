//! Reading Vault's answers: status codes to error kinds, Vault's `errors` messages, and
//! the HTTP client's own failures.

use reqwest::StatusCode;
use serde_json::Value;

use crate::SecretsError;

/// Vault's error messages are kept in errors, cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// One HTTP answer from Vault: status and JSON body (`Null` when empty or not JSON).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

/// 2xx: the body; otherwise the matching error.
pub(super) fn expect_success(operation: &str, answer: Answer) -> Result<Value, SecretsError> {
    if answer.status.is_success() {
        Ok(answer.body)
    } else {
        Err(failure(operation, &answer))
    }
}

/// The error for an answer that is not a success.
pub(super) fn failure(operation: &str, answer: &Answer) -> SecretsError {
    let status = answer.status;
    let messages = vault_messages(&answer.body);
    let code = status.as_u16();
    match status {
        StatusCode::FORBIDDEN => SecretsError::Denied(format!("{operation}: {messages}")),
        StatusCode::NOT_FOUND => SecretsError::NotFound(format!("{operation}: {messages}")),
        // Sealed, standby, rate-limited, or not yet consistent: worth retrying later.
        StatusCode::TOO_MANY_REQUESTS | StatusCode::PRECONDITION_FAILED => {
            SecretsError::Unavailable(format!("{operation}: Vault answered {code}: {messages}"))
        }
        _ if status.is_server_error() => {
            SecretsError::Unavailable(format!("{operation}: Vault answered {code}: {messages}"))
        }
        _ if status.is_client_error() => SecretsError::Rejected {
            status: code,
            message: format!("{operation}: {messages}"),
        },
        _ => SecretsError::BadResponse(format!("{operation}: status {code}")),
    }
}

/// Vault's `errors` array, joined and cut short.
pub(super) fn vault_messages(body: &Value) -> String {
    let joined = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    if joined.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = joined.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// Follows a few redirects (a standby node points to the active one), never from https
/// to http: the token would travel in clear.
pub(super) fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt
                .previous()
                .first()
                .is_some_and(|first| first.scheme() == "https");
        if downgrade {
            attempt.error("refusing a redirect from https to http")
        } else if attempt.previous().len() > 3 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// A reqwest error and its causes, without the URL.
pub(super) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_codes_map_to_error_kinds() {
        let answer = |status: u16| Answer {
            status: StatusCode::from_u16(status).expect("status"),
            body: json!({"errors": ["boom"]}),
        };
        assert!(matches!(
            expect_success("op", answer(503)),
            Err(SecretsError::Unavailable(_))
        ));
        assert!(matches!(
            expect_success("op", answer(429)),
            Err(SecretsError::Unavailable(_))
        ));
        assert!(matches!(
            expect_success("op", answer(403)),
            Err(SecretsError::Denied(_))
        ));
        assert!(matches!(
            expect_success("op", answer(404)),
            Err(SecretsError::NotFound(_))
        ));
        assert!(matches!(
            expect_success("op", answer(400)),
            Err(SecretsError::Rejected { status: 400, .. })
        ));
        assert!(expect_success("op", answer(200)).is_ok());
    }
}
