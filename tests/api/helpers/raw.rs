//! Raw HTTP over TCP, for what reqwest would not send as written (`..` in a path, a
//! chunked body, half a request) or would hide (the bytes of an answer).

use serde_json::Value;

use super::assert::{assert_problem_parts, lenient_json};

/// An HTTP response read off a raw TCP connection (see [`raw_request`]).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` byte for byte over a new connection — no path normalisation, unlike
/// reqwest, so `..` reaches the server as written — and reads until the server closes
/// the connection (send `Connection: close`). Bounded by ten seconds.
pub async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let bytes = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .expect("no complete answer within 10 s")
        .expect("raw exchange failed");
    parse_raw_response(&bytes)
}

/// A request line, `Host`, `Connection: close`, and a JSON body when given.
pub fn raw_http(method: &str, path: &str, host: &str, body: Option<&Value>) -> Vec<u8> {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n").into_bytes();
    match body {
        Some(body) => {
            let body = body.to_string();
            request.extend_from_slice(
                format!(
                    "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        None => request.extend_from_slice(b"\r\n"),
    }
    request
}

/// Parses one HTTP/1.1 response (a `Content-Length` or chunked body, or up to the end).
pub fn parse_raw_response(bytes: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(bytes);
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[split + 4..];
    let is_chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = if is_chunked {
        dechunk(rest)
    } else if let Some(length) = length {
        rest[..length.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("chunk size");
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size.min(rest.len())]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    body
}

/// Asserts a problem answer read off a raw connection, with `status` and the `type` of
/// `slug` (see [`assert_problem_parts`]); returns its body.
pub fn assert_raw_problem(response: &RawResponse, status: u16, slug: &str, context: &str) -> Value {
    let body = lenient_json(&response.body);
    let answer = (response.status, response.header("content-type"), &body);
    assert_problem_parts(context, answer, status, &[slug]);
    body
}
