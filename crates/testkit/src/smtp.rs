//! A local SMTP sink: speaks enough SMTP (RFC 5321: EHLO/HELO, MAIL, RCPT, DATA, RSET,
//! NOOP, QUIT) for a real client to deliver to it over TCP, and keeps every message.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One delivered message.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-stuffing undone).
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }
}

impl Mail {
    /// The decoded text of the first part of type `mime` (`text/plain`, `text/html`):
    /// a single-part message's body, or a part of a `multipart/*` one (nested too),
    /// with its transfer encoding (quoted-printable, base64, 7bit, 8bit) undone.
    pub fn part(&self, mime: &str) -> Option<String> {
        part_of(&self.data, mime)
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        self.part("text/plain").unwrap_or_default()
    }
}

/// Header block and body of a MIME entity.
fn split_entity(entity: &str) -> (&str, &str) {
    let entity = entity.trim_start_matches(['\r', '\n']);
    match entity.find("\n\n") {
        Some(at) => (&entity[..at], &entity[at + 2..]),
        None => (entity, ""),
    }
}

/// Header `name` of a header block (unfolded).
fn header_of(headers: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut value: Option<String> = None;
    for line in headers.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if line.to_ascii_lowercase().starts_with(&prefix) {
            value = Some(line[prefix.len()..].trim().to_owned());
        }
    }
    value
}

fn part_of(entity: &str, mime: &str) -> Option<String> {
    let (headers, body) = split_entity(entity);
    let content_type = header_of(headers, "content-type").unwrap_or_else(|| "text/plain".into());
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let boundary = content_type
            .split(';')
            .map(str::trim)
            .find_map(|p| {
                p.strip_prefix("boundary=")
                    .or_else(|| p.strip_prefix("BOUNDARY="))
            })?
            .trim_matches('"')
            .to_owned();
        let delimiter = format!("--{boundary}");
        return body
            .split(&delimiter)
            .skip(1)
            .take_while(|p| !p.starts_with("--"))
            .find_map(|p| part_of(p, mime));
    }
    if !lower.starts_with(mime) {
        return None;
    }
    let encoding = header_of(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            decode_base64(&compact)?
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    String::from_utf8(bytes)
        .ok()
        .map(|t| t.trim_end().to_owned())
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes().take_while(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        let (line, soft) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 3 <= bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        if !soft {
            out.push(b'\n');
        }
    }
    out
}

/// The sink; stops with the test's runtime.
pub struct TestSmtp {
    /// `smtp://127.0.0.1:<port>` (no TLS, no authentication).
    pub url: String,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl TestSmtp {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("smtp://{}", listener.local_addr()?);
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(stream, store).await;
                });
            }
        });
        Ok(Self { url, mails })
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn address(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument.rfind('>').unwrap_or(argument.len());
    argument[start..end].to_owned()
}

async fn session(
    stream: tokio::net::TcpStream,
    store: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 testkit SMTP sink\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-testkit\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail = Mail {
                from: address(&command[10..]),
                ..Mail::default()
            };
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address(&command[8..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let text = line.trim_end_matches(['\r', '\n']);
                if text == "." {
                    break;
                }
                data.push_str(text.strip_prefix('.').unwrap_or(text));
                data.push('\n');
            }
            mail.data = data;
            if let Ok(mut all) = store.lock() {
                all.push(std::mem::take(&mut mail));
            }
            b"250 OK: queued\r\n"
        } else if upper == "RSET" {
            mail = Mail::default();
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_are_found_and_decoded() {
        let data = "Subject: x\nContent-Type: multipart/alternative;\n boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nopen https://app.test/verify-email#token=3Dab=\ncd\nbye\n--b1\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\nPGI+aGk8L2I+\n--b1--\n";
        let mail = Mail {
            data: data.into(),
            ..Mail::default()
        };
        assert_eq!(
            mail.text(),
            "open https://app.test/verify-email#token=abcd\nbye"
        );
        assert_eq!(mail.part("text/html").as_deref(), Some("<b>hi</b>"));
        let plain = Mail {
            data: "Subject: y\n\nHello\n".into(),
            ..Mail::default()
        };
        assert_eq!(plain.text(), "Hello");
    }
}
