//! Request framing judged as vLLM's uvicorn (httptools) judges it, on raw sockets: heads it
//! refuses get its exact 400 and the connection closes; valid keep-alive traffic (pipelined
//! requests, chunked bodies with trailers) is served as before.

mod support;

use llm_emu_serve::framing::{MAX_HEAD_BYTES, REFUSAL_BODY};
use std::time::Duration;
use support::{options, start, MODEL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `bytes` on a fresh connection and reads until the server closes it (at most 10 s).
async fn exchange(s: &support::Running, bytes: &[u8]) -> String {
    let mut c = s.connect().await;
    c.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "connection still open after 10 s; got {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// uvicorn's answer, byte for byte, with the date it carries (which must be a valid HTTP
/// date).
fn assert_is_uvicorns_400(response: &str, case: &str) {
    let date = response
        .split("\r\n")
        .find_map(|l| l.strip_prefix("date: "))
        .unwrap_or_else(|| panic!("{case}: no date in {response:?}"));
    assert!(
        httpdate::parse_http_date(date).is_ok(),
        "{case}: bad date {date:?}"
    );
    let want = format!(
        "HTTP/1.1 400 Bad Request\r\ndate: {date}\r\nserver: uvicorn\r\ncontent-type: text/plain; \
         charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    assert_eq!(response, want, "{case}");
}

fn tokenize_body() -> String {
    format!(r#"{{"model":"{MODEL}","prompt":"a b c"}}"#)
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}\r\n{body}"
    )
    .into_bytes()
}

/// Every framing uvicorn's parser refuses (checked against uvicorn 0.55 with httptools 0.9,
/// vLLM 0.19's server) gets its 400 and a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_framings_get_uvicorns_400_and_the_connection_closes() {
    let s = start(1000, 4096, options()).await;
    let body = tokenize_body();
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let n = body.len();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Transfer-Encoding then Content-Length",
            post(
                &format!("Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n"),
                &chunked,
            ),
        ),
        (
            "Content-Length then Transfer-Encoding",
            post(
                &format!("Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n"),
                &chunked,
            ),
        ),
        (
            "Content-Length twice, same value",
            post(
                &format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"),
                &body,
            ),
        ),
        (
            "Content-Length twice, different values",
            post(
                &format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1),
                &body,
            ),
        ),
        (
            "Content-Length list",
            post(&format!("Content-Length: {n}, {n}\r\n"), &body),
        ),
        (
            "Content-Length not a number",
            post("Content-Length: abc\r\n", &body),
        ),
        (
            "Content-Length with a sign",
            post(&format!("Content-Length: +{n}\r\n"), &body),
        ),
        (
            "Content-Length negative",
            post("Content-Length: -1\r\n", &body),
        ),
        ("Content-Length empty", post("Content-Length: \r\n", &body)),
        (
            "Content-Length past 64 bits",
            post("Content-Length: 18446744073709551616\r\n", &body),
        ),
        (
            "Transfer-Encoding gzip",
            post("Transfer-Encoding: gzip\r\n", &body),
        ),
        (
            "Transfer-Encoding chunked, gzip",
            post("Transfer-Encoding: chunked, gzip\r\n", &chunked),
        ),
        (
            "Transfer-Encoding chunked twice",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                &chunked,
            ),
        ),
        (
            "Transfer-Encoding chunked,",
            post("Transfer-Encoding: chunked,\r\n", &chunked),
        ),
        (
            "Transfer-Encoding identity",
            post("Transfer-Encoding: identity\r\n", &body),
        ),
        (
            "bare LF line ends",
            b"GET /health HTTP/1.1\nHost: x\n\n".to_vec(),
        ),
        (
            "malformed request line",
            b"G@T /health HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "unknown HTTP version",
            b"GET /health HTTP/2.5\r\n\r\n".to_vec(),
        ),
        (
            "space before the colon",
            b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(),
        ),
        (
            "TLS handshake on the plain port",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
        ),
    ];
    for (case, bytes) in cases {
        let response = exchange(&s, &bytes).await;
        assert_is_uvicorns_400(&response, case);
    }
    // What uvicorn accepts is served: codings before chunked, any case, spaces around a
    // length, leading zeros.
    for (case, bytes) in [
        (
            "gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", &chunked),
        ),
        ("Chunked", post("Transfer-Encoding: Chunked\r\n", &chunked)),
        (
            "spaces",
            post(&format!("Content-Length:   {n}  \r\n"), &body),
        ),
        (
            "leading zeros",
            post(&format!("Content-Length: 000{n}\r\n"), &body),
        ),
    ] {
        let mut bytes = bytes;
        // Close after the answer so that `exchange` ends.
        let at = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        bytes.splice(at..at, b"Connection: close\r\n".iter().copied());
        let response = exchange(&s, &bytes).await;
        assert!(
            response.starts_with("HTTP/1.1 200 OK"),
            "{case}: {response:?}"
        );
        assert!(response.contains("\"count\":3"), "{case}: {response:?}");
    }
    assert_eq!(s.get("/health").await.0, 200);
    s.stop_within(Duration::from_secs(10)).await;
}

/// Two valid requests sent at once are both answered, in order, on the same connection; a
/// refused head after them gets the 400 after their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_checked_and_answered_in_order() {
    let s = start(1000, 4096, options()).await;
    let body = tokenize_body();
    let mut bytes = post(&format!("Content-Length: {}\r\n", body.len()), &body);
    bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = exchange(&s, &bytes).await;
    assert_eq!(
        response.matches("HTTP/1.1 200 OK").count(),
        2,
        "{response:?}"
    );
    let tokenized = response.find("\"count\":3").expect("the first answer");
    assert!(tokenized < response.rfind("HTTP/1.1 200 OK").unwrap());

    // A valid request, then one with both framings: the first is answered, then the 400.
    let mut bytes = post(&format!("Content-Length: {}\r\n", body.len()), &body);
    bytes.extend_from_slice(&post(
        &format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            body.len()
        ),
        "0\r\n\r\n",
    ));
    let response = exchange(&s, &bytes).await;
    let (first, rest) = response.split_at(response.find("HTTP/1.1 400").expect("a 400"));
    assert!(
        first.starts_with("HTTP/1.1 200 OK") && first.contains("\"count\":3"),
        "{first:?}"
    );
    assert_is_uvicorns_400(rest, "after a pipelined valid request");

    // The same on a keep-alive connection, the refused head sent once the first is answered.
    let mut c = s.connect().await;
    c.write_all(&post(&format!("Content-Length: {}\r\n", body.len()), &body))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(&post("Content-Length: 1\r\nContent-Length: 2\r\n", "ab"))
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("closed after the 400")
        .unwrap();
    let response = String::from_utf8_lossy(&out);
    let (first, rest) = response.split_at(response.find("HTTP/1.1 400").expect("a 400"));
    assert!(first.contains("\"count\":3"), "{first:?}");
    assert_is_uvicorns_400(rest, "a later head on a keep-alive connection");
    s.stop_within(Duration::from_secs(10)).await;
}

/// A chunked body in pieces, with chunk extensions and trailers, is read whole; the next
/// request on the connection is checked and served too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_with_trailers_then_the_next_request() {
    let s = start(1000, 4096, options()).await;
    let body = tokenize_body();
    let (a, b) = body.split_at(7);
    let mut c = s.connect().await;
    let parts: Vec<Vec<u8>> = vec![
        post("Transfer-Encoding: chunked\r\n", ""),
        format!("{:x};ext=1\r\n{a}\r\n", a.len()).into_bytes(),
        format!("{:X}\r\n{b}\r\n", b.len()).into_bytes(),
        b"0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for p in parts {
        // Sent in small writes, so the parts arrive on their own.
        for piece in p.chunks(5) {
            c.write_all(piece).await.unwrap();
            c.flush().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .expect("closed after the second answer")
        .unwrap();
    let response = String::from_utf8_lossy(&out);
    assert_eq!(
        response.matches("HTTP/1.1 200 OK").count(),
        2,
        "{response:?}"
    );
    assert!(response.contains("\"count\":3"), "{response:?}");
    s.stop_within(Duration::from_secs(10)).await;
}

/// Heads the check leaves to hyper keep hyper's answers: more than 256 headers is 431 as
/// before; a head longer than the check holds back goes to hyper unjudged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_keep_hypers_431() {
    let s = start(1000, 4096, options()).await;
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..300 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let response = exchange(&s, many.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(MAX_HEAD_BYTES + 10)
    );
    let response = exchange(&s, huge.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 431") || response.starts_with("HTTP/1.1 200"),
        "{response:?}"
    );
    // A large head within the bound is served.
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(100_000)
    );
    let response = exchange(&s, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    s.stop_within(Duration::from_secs(10)).await;
}
