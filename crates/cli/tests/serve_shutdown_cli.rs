//! `llm-emu serve` as a process under clients that never finish: a shutdown ends within its
//! grace period, a second signal ends the process at once, and running out of file
//! descriptors does not make the server unreachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `sh -c "<prefix> exec llm-emu serve … <extra>"` on a port the OS picks; the process
/// and its `host:port`. Its stderr is collected by a thread.
fn start(prefix: &str, extra: &[&str]) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let bin = env!("CARGO_BIN_EXE_llm-emu");
    let script = format!(
        "{prefix} exec '{bin}' serve --host 127.0.0.1 --port 0 --served-model-name emu \
         --max-model-len 2048 --latency linear:base_us=1000,per_token_us=1 {}",
        extra.join(" ")
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("listening line")
        .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (child, addr, rx)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The exit status within `limit`, else kills the process and fails.
fn wait_within(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, t0.elapsed());
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request whose body never finishes: the server waits for it.
fn half_sent_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"prompt\": [1, 2",
    )
    .unwrap();
    // Let the server read the head and start waiting for the body.
    std::thread::sleep(Duration::from_millis(300));
    s
}

fn health(addr: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out[9..12].parse().unwrap()
}

#[test]
fn half_sent_request_does_not_hold_shutdown_past_the_grace_period() {
    let (mut child, addr, _err) = start("", &["--shutdown-grace-s", "1"]);
    let _held = half_sent_request(&addr);
    signal(&child, "-TERM");
    // Grace 1 s + 1 s for aborted responses to flush; generous slack (before: never).
    let (st, took) = wait_within(&mut child, Duration::from_secs(15));
    eprintln!("stopped {took:?} after SIGTERM (grace 1 s)");
    assert!(st.success(), "{st:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn second_signal_forces_exit_while_a_request_is_held_open() {
    use std::os::unix::process::ExitStatusExt;
    let (mut child, addr, _err) = start("", &["--shutdown-grace-s", "60"]);
    let _held = half_sent_request(&addr);
    signal(&child, "-TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first signal waits for the held request"
    );
    signal(&child, "-TERM");
    let (st, took) = wait_within(&mut child, Duration::from_secs(10));
    eprintln!("exited {took:?} after the second SIGTERM: {st:?}");
    assert!(!st.success());
    assert_eq!(
        st.code(),
        Some(128 + 15),
        "{st:?} (signal {:?})",
        st.signal()
    );
}

#[test]
fn second_sigint_forces_exit_too() {
    let (mut child, addr, _err) = start("", &["--shutdown-grace-s", "60"]);
    let _held = half_sent_request(&addr);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none());
    signal(&child, "-INT");
    let (st, _) = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(st.code(), Some(128 + 2), "{st:?}");
}

/// With only 128 file descriptors (soft and hard), 200 idle clients would take them all: the
/// connection limit keeps descriptors free, the idle clients are closed by the header timeout,
/// and /health is answered; the limit is logged.
#[test]
fn idle_clients_beyond_the_fd_limit_do_not_make_the_server_unreachable() {
    let (mut child, addr, err) = start("ulimit -n 128 &&", &["--header-read-timeout-s", "1"]);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let a = addr.clone();
    std::thread::spawn(move || {
        let _ = tx.send(health(&a));
    });
    // Answered once the idle clients ahead of it have been closed (1 s each round of 64);
    // before the limit, the server was out of descriptors for as long as they stayed.
    let status = rx.recv_timeout(Duration::from_secs(20));
    eprintln!("/health answered after {:?}", t0.elapsed());
    drop(idle);
    signal(&child, "-TERM");
    let _ = wait_within(&mut child, Duration::from_secs(15));
    assert_eq!(status, Ok(200));
    let log: Vec<String> = err.try_iter().collect();
    assert!(
        log.iter()
            .any(|l| l.contains("open-file limit (RLIMIT_NOFILE) 128")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("64 connections open (--max-connections)")),
        "{log:?}"
    );
}

/// A text job that runs long on a blocking thread (here: `/tokenize` of 40 MB of text, tens
/// of seconds in a debug build) does not hold the exit: the runtime waits for blocking work
/// at most 1 s once the server has stopped (before: the process lived until the job ended).
#[test]
fn running_text_job_does_not_hold_the_exit() {
    let (mut child, addr, _err) = start("", &["--shutdown-grace-s", "1"]);
    let text = "word ".repeat(40 << 20 >> 3);
    let body = format!(r#"{{"prompt": "{text}"}}"#);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(
        format!(
            "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // Let the server read the body and start tokenizing it.
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "-TERM");
    // Grace 1 s + 1 s flush + 1 s for blocking work; generous slack.
    let (st, took) = wait_within(&mut child, Duration::from_secs(10));
    eprintln!("stopped {took:?} after SIGTERM with a text job running (grace 1 s)");
    assert!(st.success(), "{st:?}");
}
