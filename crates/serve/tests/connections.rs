//! Connection-level bounds: clients that send slowly, never finish, never read, or come in
//! numbers, and a shutdown that ends whatever they do.

mod support;

use llm_emu_serve::conn::{ConnLimits, ABORT_FLUSH, PROBE_RESERVE};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{closed_within, options, start};
use tokio::io::AsyncWriteExt;

fn limits() -> ConnLimits {
    ConnLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(2),
        write_stall_timeout: Duration::from_secs(1),
        max_connections: 64,
    }
}

/// A request head sent one byte every 200 ms never completes: the connection is closed once
/// the header timeout (1 s) has passed since it opened, not kept for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connection_is_closed_after_the_header_timeout() {
    let s = start(
        1000,
        4096,
        ServeOptions {
            conn: limits(),
            ..options()
        },
    )
    .await;
    let mut c = s.connect().await;
    let t0 = Instant::now();
    let trickle = async {
        for b in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if c.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    // 60 bytes at 5 bytes/s would take 12 s.
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .ok();
    let closed = closed_within(&mut c, Duration::from_secs(5)).await;
    let open_for = t0.elapsed();
    assert!(
        closed.is_some(),
        "a slowloris connection was still open after {open_for:?}"
    );
    // Closed by the 1 s header timeout; a generous bound for a busy machine (the trickle alone
    // lasts 12 s).
    assert!(
        open_for < Duration::from_secs(8),
        "closed after {open_for:?}"
    );
    // The server still serves everyone else.
    assert_eq!(s.get("/health").await.0, 200);
    s.stop_within(Duration::from_secs(10)).await;
}

/// An idle keep-alive connection is closed after the same timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed() {
    let s = start(
        1000,
        4096,
        ServeOptions {
            conn: limits(),
            ..options()
        },
    )
    .await;
    let mut c = s.connect().await;
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response comes, then the connection stays open (keep-alive) until the timeout.
    let closed = closed_within(&mut c, Duration::from_secs(8)).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection stayed open"
    );
    assert!(closed.unwrap() >= Duration::from_millis(500), "{closed:?}");
    s.stop_within(Duration::from_secs(10)).await;
}

/// A body that stops half way gets 408 after the body timeout and its connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_body_gets_408_after_the_body_timeout() {
    let s = start(
        1000,
        4096,
        ServeOptions {
            conn: limits(),
            ..options()
        },
    )
    .await;
    let mut c = s.connect().await;
    c.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"prompt\": [1,",
    )
    .await
    .unwrap();
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(10), support::read_response(&mut c))
            .await
            .expect("an answer within 10 s");
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("did not arrive within 2 s"), "{body}");
    s.stop_within(Duration::from_secs(10)).await;
}

/// A body over the limit, declared and sent in pieces, still gets its 413: the server reads
/// the rest and discards it before answering. Closing at once, while the client is still
/// sending, makes the kernel reset the connection, and the client sees a broken pipe instead
/// of the answer (what happened before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_sent_in_pieces_gets_its_413() {
    let s = start(
        1000,
        4096,
        ServeOptions {
            conn: limits(),
            max_body_bytes: 64 << 10,
            ..options()
        },
    )
    .await;
    let body_len = 1 << 20;
    let mut c = s.connect().await;
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {body_len}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b' '; 16 << 10];
    for _ in 0..body_len / piece.len() {
        tokio::time::sleep(Duration::from_millis(2)).await;
        c.write_all(&piece)
            .await
            .expect("the server keeps reading an oversized body until its end");
    }
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(10), support::read_response(&mut c))
            .await
            .expect("an answer within 10 s");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("65536 bytes"), "{body}");
    s.stop_within(Duration::from_secs(10)).await;
}

/// A client that sends a streaming request and never reads: once the socket buffers are full
/// the write stalls, and after the write timeout the connection is closed and the request
/// dropped (`server_load` back to 0) instead of held for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let s = start(
        20,
        4096,
        ServeOptions {
            conn: limits(),
            ..options()
        },
    )
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = sock.connect(s.addr).await.unwrap();
    let body =
        r#"{"prompt": [1], "max_tokens": 4000, "n": 16, "ignore_eos": true, "stream": true}"#;
    c.write_all(
        format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Being served…
    let t0 = Instant::now();
    while s.server_load().await == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …then dropped although the client keeps the connection open (64,000 chunks of ~200
    // bytes do not fit in loopback buffers; the write timeout is 1 s).
    let t0 = Instant::now();
    while s.server_load().await != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "a response nobody reads was held for {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);
    s.stop_within(Duration::from_secs(10)).await;
}

/// With `max_connections` open (idle), further connections wait in the listen backlog; the
/// idle ones are closed by the header timeout, so a new client's /health is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_and_health_still_answers() {
    let conn = ConnLimits {
        max_connections: 4,
        ..limits()
    };
    let s = start(1000, 4096, ServeOptions { conn, ..options() }).await;
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(s.connect().await);
    }
    let t0 = Instant::now();
    let (status, _) = tokio::time::timeout(Duration::from_secs(15), s.get("/health"))
        .await
        .expect("/health answered within 15 s while 12 idle connections exceed a limit of 4");
    assert_eq!(status, 200);
    eprintln!("/health answered after {:?}", t0.elapsed());
    assert!(s.stats.limit_reached.load(Ordering::Relaxed) > 0);
    assert!(s.stats.open.load(Ordering::Relaxed) <= 4 + PROBE_RESERVE as u64);
    s.stop_within(Duration::from_secs(10)).await;
}

/// Clients holding every regular slot (idle, with a header timeout long enough to keep them)
/// do not delay a probe: /health is answered on a reserve connection at once. A request that
/// is not a probe waits on its reserve connection until a slot frees, then is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_while_every_regular_slot_is_taken() {
    let conn = ConnLimits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    };
    let s = start(1000, 4096, ServeOptions { conn, ..options() }).await;
    let mut holders = vec![s.connect().await, s.connect().await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/health", "/metrics", "/version"] {
        let t0 = Instant::now();
        let (status, _) = tokio::time::timeout(Duration::from_secs(5), s.get(path))
            .await
            .unwrap_or_else(|_| panic!("{path} not answered within 5 s with both slots taken"));
        assert_eq!(status, 200, "{path}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{path}: {:?}",
            t0.elapsed()
        );
    }
    assert!(s.stats.limit_reached.load(Ordering::Relaxed) >= 3);

    // /v1/models is not a probe: it waits for a slot, which frees when a holder leaves.
    let models = {
        let addr = s.addr;
        tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            (Instant::now(), support::read_response(&mut c).await)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !models.is_finished(),
        "/v1/models was served with no slot free"
    );
    let released = Instant::now();
    holders.pop();
    let (_, (status, _)) = tokio::time::timeout(Duration::from_secs(5), models)
        .await
        .expect("/v1/models served once a slot freed")
        .unwrap();
    assert_eq!(status, 200);
    eprintln!(
        "/v1/models served {:?} after a slot freed",
        released.elapsed()
    );
    drop(holders);
    s.stop_within(Duration::from_secs(10)).await;
}

/// A request that is not a probe and finds no slot within the wait limit (the body timeout)
/// gets 503 rather than waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_finds_no_slot_in_time_gets_503() {
    let conn = ConnLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_millis(500),
        ..limits()
    };
    let s = start(1000, 4096, ServeOptions { conn, ..options() }).await;
    let holder = s.connect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), s.get("/v1/models"))
        .await
        .expect("answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(s.stats.slot_wait_timeouts.load(Ordering::Relaxed), 1);
    drop(holder);
    s.stop_within(Duration::from_secs(10)).await;
}

/// Shutdown ends after its grace period whatever the clients do: a half-sent request head, a
/// half-sent body, and a stream nobody reads are all held open by their clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_after_the_grace_period_whatever_clients_do() {
    let grace = Duration::from_millis(500);
    let conn = ConnLimits {
        // Long enough that only the shutdown can end these connections.
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        write_stall_timeout: Duration::from_secs(60),
        max_connections: 64,
    };
    let s = start(
        20,
        4096,
        ServeOptions {
            conn,
            shutdown_grace: grace,
            ..options()
        },
    )
    .await;
    let mut head = s.connect().await;
    head.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut body = s.connect().await;
    body.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"prompt\"",
    )
    .await
    .unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut unread = sock.connect(s.addr).await.unwrap();
    let req = r#"{"prompt": [1], "max_tokens": 4000, "n": 16, "ignore_eos": true, "stream": true}"#;
    unread
        .write_all(
            format!(
                "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{req}",
                req.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    while s.server_load().await == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = s.stop_within(Duration::from_secs(20)).await;
    eprintln!("shutdown took {took:?} (grace {grace:?})");
    // Grace, then the abort's flush period, then everything is closed; 3 s of slack for a
    // busy machine (before, it waited for the clients: never).
    assert!(took >= grace, "{took:?}");
    assert!(
        took < grace + ABORT_FLUSH + Duration::from_secs(3),
        "{took:?}"
    );
    for c in [&mut head, &mut body, &mut unread] {
        assert!(closed_within(c, Duration::from_secs(5)).await.is_some());
    }
}

use llm_emu_serve::ServeOptions;
