//! Helpers shared by the CLI tests that talk to a running `llm-emu serve`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 request with a JSON content type and `Connection: close` on a fresh
/// connection; `headers` are extra header lines, each ending in `\r\n`. Returns the status and
/// the body as sent (not de-chunked). Reads wait at most `read_timeout`.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
    read_timeout: Duration,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// [`http_request`] without extra headers, reads waiting at most 20 s.
#[allow(dead_code)] // not every test file uses it
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request(addr, method, path, "", body, Duration::from_secs(20))
}
