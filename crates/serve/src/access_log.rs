//! uvicorn's access log, which vLLM's server keeps unless `--disable-uvicorn-access-log`: one
//! line per request when its response starts (a stream is logged at its first byte, not its
//! end), in uvicorn's default format:
//!
//! ```text
//! INFO:     127.0.0.1:51234 - "POST /v1/completions HTTP/1.1" 200 OK
//! ```
//!
//! The client address comes from the connection layer ([`crate::conn`] puts it in each
//! request's extensions as axum's [`ConnectInfo`]). Lines go to stderr, unbuffered, one write
//! each, so lines from concurrent requests never interleave.

use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, Version};
use axum::middleware::Next;
use axum::response::Response;
use std::io::Write;
use std::net::SocketAddr;

/// The middleware: passes the request on, logs its status line once the response starts.
pub async fn log(req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let version = req.version();
    let resp = next.run(req).await;
    let line = access_line(peer, &method, &target, version, resp.status());
    // A closed or full stderr must not fail the request.
    let _ = std::io::stderr().write_all(line.as_bytes());
    resp
}

/// One access-log line with its newline, as uvicorn's `AccessFormatter` writes it: the level
/// prefix padded to 10 characters, `host:port` (empty when unknown), the request line with `"`
/// escaped as `%22`, and the status code with Python's `http.HTTPStatus` phrase.
pub fn access_line(
    peer: Option<SocketAddr>,
    method: &str,
    target: &str,
    version: Version,
    status: StatusCode,
) -> String {
    let client = match peer {
        Some(SocketAddr::V4(a)) => format!("{}:{}", a.ip(), a.port()),
        // Python's `"%s:%d" % (host, port)` of an IPv6 peer: no brackets.
        Some(SocketAddr::V6(a)) => format!("{}:{}", a.ip(), a.port()),
        None => String::new(),
    };
    let version = match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    format!(
        "INFO:     {client} - \"{method} {} HTTP/{version}\" {} {}\n",
        target.replace('"', "%22"),
        status.as_u16(),
        python_phrase(status)
    )
}

/// The reason phrase Python 3.11's `http.HTTPStatus` gives (uvicorn prints that one), where it
/// differs from the `http` crate's.
fn python_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        416 => "Requested Range Not Satisfiable",
        418 => "I'm a Teapot",
        _ => status.canonical_reason().unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_uvicorn_writes_them() {
        let peer: SocketAddr = "127.0.0.1:51234".parse().unwrap();
        assert_eq!(
            access_line(
                Some(peer),
                "POST",
                "/v1/completions",
                Version::HTTP_11,
                StatusCode::OK
            ),
            "INFO:     127.0.0.1:51234 - \"POST /v1/completions HTTP/1.1\" 200 OK\n"
        );
        assert_eq!(
            access_line(
                None,
                "GET",
                "/v1/models?x=\"1\"",
                Version::HTTP_10,
                StatusCode::PAYLOAD_TOO_LARGE
            ),
            "INFO:      - \"GET /v1/models?x=%221%22 HTTP/1.0\" 413 Request Entity Too Large\n"
        );
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(access_line(
            Some(v6),
            "GET",
            "/health",
            Version::HTTP_11,
            StatusCode::NOT_FOUND
        )
        .starts_with("INFO:     ::1:8080 - \"GET /health HTTP/1.1\" 404 Not Found"));
    }
}
