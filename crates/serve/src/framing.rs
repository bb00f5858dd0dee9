//! Request framing as vLLM's server judges it, checked on the socket before hyper parses it.
//!
//! vLLM's uvicorn runs the httptools (llhttp) parser, which refuses some request heads that
//! hyper accepts or answers differently: `Transfer-Encoding` together with `Content-Length`
//! (hyper drops the length and reads the body as chunked), `Content-Length` twice (even with
//! the same value), a `Content-Length` that is not a plain decimal number (`+5`, `5, 5`, `-1`,
//! past 64 bits), a `Transfer-Encoding` whose last coding is not `chunked` or that names
//! anything after `chunked`, a line ended by a bare LF, and heads httparse cannot parse. To
//! each, uvicorn answers [`REFUSAL_BODY`] with status 400 and closes the connection.
//!
//! [`FramingGuard`] sits under hyper on the read side of a connection. It holds back the bytes
//! of each request head until the head is complete, parses it with `httparse` (the parser
//! hyper uses), and follows the body's framing (a `Content-Length` count, or the chunked
//! encoding with its trailers) so that every head on a keep-alive connection is checked,
//! pipelined ones included. A head it refuses never reaches hyper: hyper gets a stand-in
//! request instead ([`STAND_IN_HEAD`]), which the connection's service answers with uvicorn's
//! 400 ([`refusal_response`]) after any response before it, and the connection closes.
//!
//! Heads it does not judge pass to hyper unchanged, which keeps hyper's own answers: more than
//! [`crate::conn::MAX_HEADERS`] headers (431), a head larger than hyper's read buffer,
//! [`MAX_HEAD_BYTES`] (431; uvicorn has no such bound), and `Transfer-Encoding` on HTTP/1.0
//! (hyper: 400; uvicorn reads it). After one of those, or a chunked body whose framing is
//! broken (hyper fails the request), the guard stops inspecting: hyper closes the connection.

use axum::body::Body;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, SERVER};
use hyper::{Response, StatusCode};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The body of uvicorn's answer to a request its parser refuses
/// (`httptools_impl.py`, `send_400_response`).
pub const REFUSAL_BODY: &str = "Invalid HTTP request received.";

/// The most bytes of one request head held back for inspection: hyper's default read buffer
/// limit (`8192 + 4096 * 100`), past which hyper itself refuses the head (431).
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Longest chunk-size line (size and extensions) followed; a longer one ends the inspection
/// of the connection and is left to hyper. The line is parsed again as its bytes arrive, so the
/// bound keeps that cheap.
const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// Longest trailer section followed (hyper's own limit on trailers is 16 KiB); past it the
/// inspection ends and hyper decides.
const MAX_TRAILER_BYTES: usize = 64 << 10;

/// What hyper is given in place of a refused head.
pub const STAND_IN_HEAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

/// Bytes read from the socket at a time while a head is held back.
const READ_CHUNK: usize = 8192;

/// Which request on a connection, counted from 0 in the order hyper hands them to the service,
/// is the stand-in for a refused head (`u64::MAX`: none).
#[derive(Debug)]
pub struct Refusals {
    refused: AtomicU64,
    next_request: AtomicU64,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            refused: AtomicU64::new(u64::MAX),
            next_request: AtomicU64::new(0),
        }
    }
}

impl Refusals {
    /// Called once per request the service receives, in order: whether this one stands in for
    /// a refused head.
    pub fn next_is_refused(&self) -> bool {
        let index = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.refused.load(Ordering::Acquire) == index
    }
}

/// uvicorn's 400 for a request its parser refuses, byte for byte: `date`, `server: uvicorn`,
/// the plain-text type, the length and `connection: close`, in that order.
pub fn refusal_response() -> Response<Body> {
    let mut r = Response::new(Body::from(REFUSAL_BODY));
    *r.status_mut() = StatusCode::BAD_REQUEST;
    let h = r.headers_mut();
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(std::time::SystemTime::now()))
    {
        h.insert(DATE, date);
    }
    h.insert(SERVER, HeaderValue::from_static("uvicorn"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(REFUSAL_BODY.len()));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Where the inspection of the byte stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// Waiting for a complete request head (held back from hyper).
    Head,
    /// Bytes of a `Content-Length` body still to come.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Data bytes of the current chunk still to come.
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes of it still to come.
    ChunkEnd(u8),
    /// The trailer section after the last chunk, up to its empty line: bytes of it so far, and
    /// whether the current line has anything but CR.
    Trailers { seen: usize, line: bool },
    /// A head was refused: hyper has its stand-in, the rest is discarded.
    Refused,
    /// No more inspection: everything goes to hyper as it comes.
    PassThrough,
}

/// The verdict on one complete head.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A valid head; its body follows in this framing.
    Accept(Frame),
    /// What uvicorn refuses with its 400.
    Refuse,
    /// Left to hyper (which refuses it its own way).
    PassThrough,
}

/// The read side of a connection, checked request by request before hyper sees it (see the
/// module documentation); writes go straight through.
pub struct FramingGuard<T> {
    inner: T,
    /// Bytes read from the socket and not yet given to hyper.
    buf: Vec<u8>,
    /// Of `buf`, how many from the start hyper may have.
    released: usize,
    /// Of `buf`, how many the state machine has looked at.
    scanned: usize,
    /// Where in `buf` the search for a head's end may resume (bytes before it hold none).
    head_search: usize,
    frame: Frame,
    /// Heads handed to hyper so far (valid ones and stand-ins).
    heads: u64,
    /// The client's end of the stream was read.
    eof: bool,
    refusals: Arc<Refusals>,
}

impl<T> FramingGuard<T> {
    pub fn new(inner: T, refusals: Arc<Refusals>) -> Self {
        FramingGuard {
            inner,
            buf: Vec::new(),
            released: 0,
            scanned: 0,
            head_search: 0,
            frame: Frame::Head,
            heads: 0,
            eof: false,
            refusals,
        }
    }

    /// Advances the state machine over the bytes of `buf` not yet looked at, releasing those
    /// hyper may have.
    fn scan(&mut self) {
        while self.scanned < self.buf.len() {
            let rest = &self.buf[self.scanned..];
            match self.frame {
                Frame::Head => {
                    let Some(end) = head_end(&self.buf[..], self.head_search) else {
                        self.head_search = self.buf.len().saturating_sub(3).max(self.scanned);
                        if self.buf.len() - self.scanned > MAX_HEAD_BYTES {
                            self.pass_through();
                        }
                        return;
                    };
                    let head = &self.buf[self.scanned..end];
                    match judge_head(head) {
                        None => {
                            // Only empty lines so far: keep them with the head to come.
                            self.head_search = end;
                            return;
                        }
                        Some(Verdict::Accept(next)) => {
                            self.heads += 1;
                            self.scanned = end;
                            self.released = end;
                            self.head_search = end;
                            self.frame = next;
                        }
                        Some(Verdict::Refuse) => {
                            self.refusals.refused.store(self.heads, Ordering::Release);
                            self.heads += 1;
                            // What came before the refused head is still hyper's, then the
                            // stand-in; the rest is the client's and is dropped.
                            self.buf.truncate(self.scanned);
                            self.buf.extend_from_slice(STAND_IN_HEAD);
                            self.scanned = self.buf.len();
                            self.released = self.buf.len();
                            self.frame = Frame::Refused;
                            return;
                        }
                        Some(Verdict::PassThrough) => {
                            self.pass_through();
                            return;
                        }
                    }
                }
                Frame::Body(left) | Frame::ChunkData(left) => {
                    let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.release(n);
                    self.advance_body(n as u64);
                }
                Frame::ChunkEnd(left) => {
                    let want: &[u8] = &b"\r\n"[2 - left as usize..];
                    let n = rest.len().min(want.len());
                    if rest[..n] != want[..n] {
                        return self.pass_through();
                    }
                    self.release(n);
                    let left = left - n as u8;
                    self.frame = if left == 0 {
                        Frame::ChunkSize
                    } else {
                        Frame::ChunkEnd(left)
                    };
                }
                Frame::ChunkSize => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        self.release(used);
                        self.frame = if size == 0 {
                            Frame::Trailers {
                                seen: 0,
                                line: false,
                            }
                        } else {
                            Frame::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > MAX_CHUNK_LINE_BYTES {
                            self.pass_through();
                        }
                        return;
                    }
                    Err(_) => return self.pass_through(),
                },
                Frame::Trailers { seen, mut line } => {
                    // Lines up to an empty one; the trailer fields themselves are hyper's.
                    let mut used = 0;
                    let mut done = false;
                    for &b in rest {
                        used += 1;
                        match b {
                            b'\n' if !line => {
                                done = true;
                                break;
                            }
                            b'\n' => line = false,
                            b'\r' => {}
                            _ => line = true,
                        }
                    }
                    self.release(used);
                    if done {
                        self.head_search = self.scanned;
                        self.frame = Frame::Head;
                    } else if seen + used > MAX_TRAILER_BYTES {
                        return self.pass_through();
                    } else {
                        self.frame = Frame::Trailers {
                            seen: seen + used,
                            line,
                        };
                    }
                }
                Frame::Refused | Frame::PassThrough => return,
            }
        }
    }

    /// Marks the next `n` bytes looked at and hyper's.
    fn release(&mut self, n: usize) {
        self.scanned += n;
        self.released = self.scanned;
    }

    /// `n` body bytes went by (a `Content-Length` body or a chunk's data).
    fn advance_body(&mut self, n: u64) {
        self.frame = match self.frame {
            Frame::Body(left) if left == n => {
                self.head_search = self.scanned;
                Frame::Head
            }
            Frame::Body(left) => Frame::Body(left - n),
            Frame::ChunkData(left) if left == n => Frame::ChunkEnd(2),
            Frame::ChunkData(left) => Frame::ChunkData(left - n),
            other => other,
        };
    }

    /// Stops inspecting: everything held goes to hyper, and so does all that follows.
    fn pass_through(&mut self) {
        self.frame = Frame::PassThrough;
        self.scanned = self.buf.len();
        self.released = self.buf.len();
    }

    /// Hands hyper what it may have from `buf`; whether anything was handed over.
    fn hand_over(&mut self, out: &mut ReadBuf<'_>) -> bool {
        if self.released == 0 || out.remaining() == 0 {
            return false;
        }
        let n = self.released.min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.drain(..n);
        self.released -= n;
        self.scanned -= n;
        self.head_search = self.head_search.saturating_sub(n);
        true
    }
}

/// The position just past the blank line that ends a head in `buf`, searching from `from`
/// (a head may end in CRLF CRLF or, refused later, with bare LFs).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// The verdict on a head that ends with a blank line; `None` when it holds only empty lines
/// (tolerated before a request line, as hyper and llhttp do).
fn judge_head(head: &[u8]) -> Option<Verdict> {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    if start == head.len() {
        return None;
    }
    if has_bare_lf(&head[start..]) {
        return Some(Verdict::Refuse);
    }
    let mut headers = [httparse::EMPTY_HEADER; crate::conn::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // A blank line inside the request line, say: refused as malformed.
        Ok(httparse::Status::Partial) => return Some(Verdict::Refuse),
        Err(httparse::Error::TooManyHeaders) => return Some(Verdict::PassThrough),
        Err(_) => return Some(Verdict::Refuse),
    }
    Some(judge_framing(req.version.unwrap_or(1), req.headers))
}

/// Whether a line of the head ends in LF without CR before it.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// llhttp's rules on `Content-Length` and `Transfer-Encoding` in a request.
fn judge_framing(version: u8, headers: &[httparse::Header<'_>]) -> Verdict {
    let mut length: Option<u64> = None;
    let mut lengths = 0;
    let mut te = false;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            match parse_length(h.value) {
                Some(n) => length = Some(n),
                None => return Verdict::Refuse,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
            for coding in h.value.split(|&b| b == b',') {
                if chunked {
                    // Anything after `chunked`, an empty coding too.
                    return Verdict::Refuse;
                }
                let coding = trim_ows(coding);
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                }
            }
        }
    }
    if lengths > 1 || (te && lengths > 0) || (te && !chunked) {
        return Verdict::Refuse;
    }
    if te {
        if version == 0 {
            return Verdict::PassThrough;
        }
        return Verdict::Accept(Frame::ChunkSize);
    }
    match length {
        Some(n) if n > 0 => Verdict::Accept(Frame::Body(n)),
        _ => Verdict::Accept(Frame::Head),
    }
}

/// A `Content-Length` value: decimal digits between optional spaces and tabs, within 64 bits.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = trim_ows(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if out.remaining() == 0 {
            // Nothing can be read into a full buffer (and an empty read would look like EOF).
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.hand_over(out) {
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // hyper is answering the stand-in; an end of stream now would make it drop the
                // answer (a client that half-closed after its request still gets it).
                if this.frame == Frame::Refused {
                    return Poll::Pending;
                }
                return Poll::Ready(Ok(()));
            }
            match this.frame {
                Frame::PassThrough if this.buf.is_empty() => {
                    return Pin::new(&mut this.inner).poll_read(cx, out);
                }
                // Body bytes go straight into hyper's buffer, at most to the body's end.
                Frame::Body(left) | Frame::ChunkData(left) if this.buf.is_empty() => {
                    let cap = out
                        .remaining()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let mut limited = out.take(cap);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut limited))?;
                    let n = limited.filled().len();
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    // SAFETY: `limited` is the unfilled part of `out`, and the inner reader
                    // initialized its first `n` bytes (tokio's `Take` does the same).
                    unsafe { out.assume_init(n) };
                    out.advance(n);
                    // `buf` is empty, so the body's end (if reached) is where the next head
                    // starts: at 0.
                    this.advance_body(n as u64);
                    this.head_search = 0;
                    return Poll::Ready(Ok(()));
                }
                _ => {}
            }
            // Read more into the held bytes and look at them.
            // Into the spare capacity, not zeroed first: hyper polls a connection's read side
            // every time it wakes (each streamed chunk), and nearly every poll finds nothing.
            let len = this.buf.len();
            this.buf.reserve(READ_CHUNK);
            let mut rb = ReadBuf::uninit(&mut this.buf.spare_capacity_mut()[..READ_CHUNK]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            // SAFETY: the reader initialized the first `n` bytes of the spare capacity.
            unsafe { this.buf.set_len(len + n) };
            ready!(polled)?;
            if n == 0 {
                this.eof = true;
                if this.frame != Frame::Refused {
                    // A head cut short: hyper sees what there is, then the end.
                    this.pass_through();
                }
                continue;
            }
            match this.frame {
                Frame::Refused => this.buf.truncate(len),
                Frame::PassThrough => this.pass_through(),
                _ => this.scan(),
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &str) -> Option<Verdict> {
        judge_head(head.as_bytes())
    }

    #[test]
    fn content_length_values_as_llhttp_reads_them() {
        for (v, want) in [
            ("5", Some(5)),
            ("  5\t", Some(5)),
            ("0005", Some(5)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("+5", None),
            ("-1", None),
            ("5, 5", None),
            ("5 5", None),
            ("", None),
            ("0x5", None),
        ] {
            assert_eq!(parse_length(v.as_bytes()), want, "{v:?}");
        }
    }

    #[test]
    fn heads_are_judged_by_their_framing() {
        let req = |h: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{h}\r\n");
        assert_eq!(verdict(&req("")), Some(Verdict::Accept(Frame::Head)));
        assert_eq!(
            verdict(&req("Content-Length: 7\r\n")),
            Some(Verdict::Accept(Frame::Body(7)))
        );
        for te in [
            "chunked",
            "gzip, chunked",
            ",chunked",
            "gzip,,chunked",
            "CHUNKED",
        ] {
            assert_eq!(
                verdict(&req(&format!("Transfer-Encoding: {te}\r\n"))),
                Some(Verdict::Accept(Frame::ChunkSize)),
                "{te}"
            );
        }
        for bad in [
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            "Content-Length: 1\r\nContent-Length: 1\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            "Transfer-Encoding: chunked;q=1\r\n",
            "X-A : 1\r\n",
        ] {
            assert_eq!(verdict(&req(bad)), Some(Verdict::Refuse), "{bad:?}");
        }
        assert_eq!(
            verdict("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(Verdict::PassThrough)
        );
        assert_eq!(
            verdict("GET / HTTP/1.1\nHost: x\n\n"),
            Some(Verdict::Refuse)
        );
        assert_eq!(verdict("\r\n\r\n"), None);
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(verdict(&req(&many)), Some(Verdict::PassThrough));
    }

    #[test]
    fn a_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
    }
}
