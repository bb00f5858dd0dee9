//! `llm-emu bench` against a server that closes idle keep-alive connections (uvicorn, vLLM's
//! HTTP server, closes them after 5 s): a request sent after such a gap must go out on a new
//! connection, not wait forever on the closed one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// The idle time after which the server closes a connection.
const IDLE_CLOSE: Duration = Duration::from_millis(200);

/// Reads one request (head and `content-length` body); `None` when the client sent nothing
/// within [`IDLE_CLOSE`] or closed.
fn read_request(s: &mut TcpStream) -> Option<()> {
    s.set_read_timeout(Some(IDLE_CLOSE)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(())
}

/// One completion of two tokens as vLLM streams it, in one keep-alive response.
fn respond(s: &mut TcpStream) -> std::io::Result<()> {
    let mut body = String::new();
    for t in ["a", "b"] {
        body += &format!("data: {{\"choices\":[{{\"index\":0,\"text\":\"{t}\"}}]}}\n\n");
    }
    body += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n";
    body += "data: [DONE]\n\n";
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn serve(listener: TcpListener) {
    for s in listener.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            while read_request(&mut s).is_some() {
                if respond(&mut s).is_err() {
                    return;
                }
            }
            // Idle past IDLE_CLOSE (or closed by the client): close, as a keep-alive timeout does.
        });
    }
}

#[test]
fn a_request_after_the_server_closed_an_idle_connection_is_sent_on_a_new_one() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener));
    // Removed when `d` drops at the end of the test, whether it passes or fails.
    let d = tempfile::Builder::new()
        .prefix("llm-emu-bench-keepalive-")
        .tempdir()
        .unwrap();
    let w = d.path().join("w.jsonl");
    // Two at once, then two more after the server has closed both idle connections.
    std::fs::write(
        &w,
        "{\"arrival_s\":0,\"prompt_len\":3,\"output_len\":2}\n\
         {\"arrival_s\":0,\"prompt_len\":3,\"output_len\":2}\n\
         {\"arrival_s\":0.8,\"prompt_len\":3,\"output_len\":2}\n\
         {\"arrival_s\":0.8,\"prompt_len\":3,\"output_len\":2}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
        .args(["bench", "--base-url", &format!("http://{addr}")])
        .args(["--model", "m", "--skip-tokenizer-init", "--disable-tqdm"])
        .args(["--dataset-name", "workload", "--dataset-path"])
        .arg(&w)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            panic!("bench still waiting after 30 s: a request was queued on a closed connection");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{:<40} {:<10}", "Successful requests:", 4)),
        "{stdout}"
    );
}
