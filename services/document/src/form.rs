//! The multipart body of an upload, read part by part as it arrives: the `file` part
//! streamed into an [`Upload`] (the size limit and the idle timeout enforced while it
//! streams), the small `filename` and `mime_type` fields, and the end of the body
//! checked; any other part, a repeated one or a stall is a 400 naming it.

use actix_multipart::Multipart;
use actix_web::web;
use bytes::Bytes;
use domain::TenantId;
use futures_util::{StreamExt, TryStreamExt};
use http_kit::{ApiError, FieldErrors};
use uuid::Uuid;

use crate::app::App;
use crate::upload::{Received, Upload};

pub(crate) fn valid_filename(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err("must be 1 to 255 characters");
    }
    // Invisible and direction-changing characters too: `a\u{202E}gpj.exe` would show as
    // "aexe.jpg".
    if name.contains('/') || name.contains('\\') || name.chars().any(domain::is_hidden_or_control) {
        return Err("must not contain '/', '\\', control or invisible formatting characters");
    }
    Ok(name.to_owned())
}

pub(crate) fn valid_mime(mime: &str) -> Result<String, &'static str> {
    let mime = mime.trim().to_ascii_lowercase();
    let ok = mime.len() <= 255
        && mime.split_once('/').is_some_and(|(t, s)| {
            // RFC 6838 restricted names: a letter or digit first.
            let token = |x: &str| {
                x.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(s)
        });
    if ok {
        Ok(mime)
    } else {
        Err("must be type/subtype")
    }
}

/// The request body, shared between the multipart parser and the check that it was
/// read to its end.
#[derive(Clone)]
pub(crate) struct SharedBody(pub(crate) std::rc::Rc<std::cell::RefCell<web::Payload>>);

impl futures_util::Stream for SharedBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

impl SharedBody {
    /// Reads what follows the closing boundary (an epilogue, normally nothing) up to the
    /// end of the body: 400 if the body breaks off or stalls before its declared end.
    pub(crate) async fn drain(&self, idle: std::time::Duration) -> Result<(), ApiError> {
        let mut rest = 0usize;
        loop {
            let next = std::future::poll_fn(|cx| self.0.borrow_mut().poll_next_unpin(cx));
            match tokio::time::timeout(idle, next).await {
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "upload stalled: the body did not reach its declared length within {} s",
                        idle.as_secs()
                    )))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Ok(chunk))) => {
                    rest += chunk.len();
                    if rest > 64 * 1024 {
                        return Err(ApiError::BadRequest(
                            "unexpected data after the multipart body".into(),
                        ));
                    }
                }
                Ok(Some(Err(e))) => {
                    return Err(ApiError::BadRequest(format!(
                        "the body ended before its declared length: {e}"
                    )))
                }
            }
        }
    }
}

/// The fields of an upload once its multipart body is read.
#[derive(Default)]
pub(crate) struct ReceivedForm {
    /// The `file` part, streamed to S3 (or held, if small) as it arrived.
    file: Option<Received>,
    errors: FieldErrors,
    filename: Option<String>,
    mime: Option<String>,
    part_filename: Option<String>,
    part_mime: Option<String>,
}

impl ReceivedForm {
    /// Drops whatever the file part made on S3 (the upload is not stored).
    pub(crate) async fn discard(&mut self) {
        if let Some(file) = self.file.take() {
            file.upload.discard().await;
        }
    }

    /// The file, its name and its content type, or the 400 saying what is wrong.
    pub(crate) fn check(&mut self) -> Result<(Received, String, String), ApiError> {
        let mut errors = std::mem::take(&mut self.errors);
        let size = self.file.as_ref().map(|f| f.upload.size);
        match size {
            None => {
                errors.add("file", "is required");
            }
            Some(0) => {
                errors.add("file", "must not be empty");
            }
            Some(_) => {}
        }
        let filename = match self.filename.take().or(self.part_filename.take()) {
            Some(name) => valid_filename(&name)
                .map_err(|m| errors.add("filename", m))
                .ok(),
            None => {
                errors.add("filename", "is required (as a field or in the file part)");
                None
            }
        };
        let mime = valid_mime(
            self.mime
                .take()
                .or(self.part_mime.take())
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .map_err(|m| errors.add("mime_type", m))
        .ok();
        errors.into_result()?;
        match (self.file.take(), filename, mime) {
            (Some(file), Some(filename), Some(mime)) => Ok((file, filename, mime)),
            _ => Err(ApiError::validation("body", "invalid")),
        }
    }
}

/// Reads the multipart body into `form`: the `file` part streams into an [`Upload`]
/// of a new File id (the size limit and the idle timeout enforced as it arrives), the
/// small `filename` and `mime_type` fields are read. On an error the caller discards
/// what the file part made.
pub(crate) async fn receive(
    app: &web::Data<App>,
    tenant: TenantId,
    database: &domain::TenantDatabaseName,
    mut multipart: Multipart,
    form: &mut ReceivedForm,
) -> Result<(), ApiError> {
    let limits = &app.uploads.settings;
    let idle = limits.idle_timeout;
    let stalled =
        || ApiError::BadRequest(format!("upload stalled: no data for {} s", idle.as_secs()));
    // Every wait for the client is bounded, between parts and inside each of them: a
    // client that stops sending holds its upload slot no longer than the idle timeout.
    while let Some(mut field) = tokio::time::timeout(idle, multipart.try_next())
        .await
        .map_err(|_| stalled())?
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" if form.file.is_some() => {
                // Keeping one of two files silently would store what the client did
                // not mean.
                return Err(ApiError::Validation(FieldErrors::single(
                    "file",
                    "only one file part is allowed",
                )));
            }
            "file" => {
                let file_id = Uuid::new_v4();
                let key = storage::object_key(database, file_id);
                let mut upload = Upload::new(app.clone(), tenant, key, file_id);
                let streamed = async {
                    let began = std::time::Instant::now();
                    loop {
                        let next = tokio::time::timeout(idle, field.next())
                            .await
                            .map_err(|_| stalled())?;
                        let Some(chunk) = next else { break };
                        let chunk = chunk.map_err(|e| {
                            ApiError::BadRequest(format!("upload interrupted: {e}"))
                        })?;
                        // A trickle holds a part buffer as long as a stall would: past
                        // the idle timeout, the file must have come at the minimum rate.
                        let elapsed = began.elapsed();
                        if elapsed > idle
                            && (upload.size as f64) < limits.min_rate as f64 * elapsed.as_secs_f64()
                        {
                            return Err(ApiError::BadRequest(format!(
                                "upload too slow: under {} bytes per second",
                                limits.min_rate
                            )));
                        }
                        if upload.size + chunk.len() as u64 > limits.max_bytes {
                            return Err(ApiError::PayloadTooLarge(format!(
                                "The file is larger than the limit of {} bytes",
                                limits.max_bytes
                            )));
                        }
                        upload.push(chunk).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = streamed {
                    upload.discard().await;
                    return Err(e);
                }
                form.part_filename = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_owned);
                form.part_mime = field.content_type().map(|m| m.essence_str().to_owned());
                match upload.finish().await {
                    Ok(received) => form.file = Some(received),
                    Err((upload, e)) => {
                        upload.discard().await;
                        return Err(e);
                    }
                }
            }
            "filename" | "mime_type" => {
                // Twice is ambiguous (which one?): refused, as a second file is, at
                // once (a body of many repeated fields must not pile up errors).
                if (name == "filename" && form.filename.is_some())
                    || (name == "mime_type" && form.mime.is_some())
                {
                    return Err(ApiError::validation(name, "must be given once"));
                }
                let mut text = Vec::new();
                while let Some(chunk) = tokio::time::timeout(idle, field.next())
                    .await
                    .map_err(|_| stalled())?
                {
                    let chunk =
                        chunk.map_err(|e| ApiError::BadRequest(format!("malformed field: {e}")))?;
                    if text.len() + chunk.len() > 1024 {
                        return Err(ApiError::validation(name, "is too long"));
                    }
                    text.extend_from_slice(&chunk);
                }
                let value = String::from_utf8(text).unwrap_or_default();
                if name == "filename" {
                    form.filename = Some(value);
                } else {
                    form.mime = Some(value);
                }
            }
            other => {
                // Refused at once: an unknown part is a client error whatever follows,
                // and collecting them would let one body grow the answer without bound.
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::validation(shown, "unknown field"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_and_mime_types_are_validated() {
        assert!(valid_filename("ok.txt").is_ok());
        for bad in [
            "",
            "   ",
            "a/b",
            "a\\b",
            &"x".repeat(256),
            "a\u{202E}gpj.exe",
            "zero\u{200B}width",
            "\u{FEFF}bom.txt",
            "tab\tname",
        ] {
            assert!(valid_filename(bad).is_err(), "{bad:?}");
        }
        assert_eq!(valid_mime("Text/Plain").as_deref(), Ok("text/plain"));
        assert_eq!(
            valid_mime("application/vnd.ms-excel").as_deref(),
            Ok("application/vnd.ms-excel")
        );
        for bad in [
            "text",
            "text/",
            "/plain",
            "text/plain; charset=x",
            "a/b/c",
            "../x",
            "text/.hidden",
            "+/plain",
        ] {
            assert!(valid_mime(bad).is_err(), "{bad:?}");
        }
    }
}
