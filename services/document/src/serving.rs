//! How a document's bytes are served to a browser, by the streamed download route and by
//! presigned URLs alike: always as an attachment under its name, and with a content type
//! that cannot run script on the origin that serves it (docs/DESIGN-NOTES.md, "Safe
//! downloads").

use storage::ServedAs;

/// Types a browser may show inline without running anything: raster images (SVG is
/// XML that runs script), PDF (rendered by the browser's viewer, not the origin), and
/// plain text. Anything else is served as `application/octet-stream`.
const INLINE_SAFE: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "application/pdf",
    "text/plain",
];

/// RFC 6266 `attachment` with an ASCII fallback and the UTF-8 name in `filename*`.
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != ';' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The content type a stored type is served with: itself when inline-safe, else
/// `application/octet-stream` (an uploaded `text/html` or `image/svg+xml` is never
/// served as such).
pub fn served_type(stored: &str) -> &str {
    let essence = stored.split(';').next().unwrap_or("").trim();
    if INLINE_SAFE
        .iter()
        .any(|safe| safe.eq_ignore_ascii_case(essence))
    {
        stored
    } else {
        "application/octet-stream"
    }
}

/// The headers of a presigned download of a document.
pub fn presigned(filename: &str, stored_type: &str) -> ServedAs {
    ServedAs {
        disposition: content_disposition(filename),
        content_type: served_type(stored_type).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_safe_for_any_name() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        let tricky = content_disposition("a\"b;c\r\nd é.txt");
        assert!(!tricky.contains('\r') && !tricky.contains('\n'), "{tricky}");
        assert!(
            tricky.contains("filename*=UTF-8''a%22b%3Bc%0D%0Ad%20%C3%A9.txt"),
            "{tricky}"
        );
    }

    #[test]
    fn only_inline_safe_types_are_served_as_stored() {
        for safe in [
            "image/png",
            "image/jpeg",
            "application/pdf",
            "text/plain",
            "Image/PNG",
        ] {
            assert_eq!(served_type(safe), safe);
        }
        for unsafe_type in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/xml",
            "application/javascript",
            "text/javascript",
            "application/octet-stream",
            "multipart/x-mixed-replace",
            "",
        ] {
            assert_eq!(
                served_type(unsafe_type),
                "application/octet-stream",
                "{unsafe_type}"
            );
        }
        let served = presigned("page.html", "text/html");
        assert_eq!(served.content_type, "application/octet-stream");
        assert!(served
            .disposition
            .starts_with("attachment; filename=\"page.html\""));
    }
}
