//! The connection layer under the routes: our own accept loop on hyper's HTTP/1 connection
//! builder, so that every wait on a client has a bound (axum's `serve` has no timeouts).
//!
//! - A connection must deliver a complete request head within [`ConnLimits::header_read_timeout`]
//!   of opening, or of the end of its previous response (hyper starts the same timer for an idle
//!   keep-alive connection): a slowloris client is closed, and so is an idle keep-alive one.
//! - A response write that makes no progress for [`ConnLimits::write_stall_timeout`] (a client
//!   that stopped reading its stream) fails the connection, which drops the response and so
//!   aborts its engine requests.
//! - At most [`ConnLimits::max_connections`] connections are served at once. [`PROBE_RESERVE`]
//!   more are accepted beyond that for probes: on those, `/health`, `/ping`, `/metrics`,
//!   `/load` and `/version` are answered at once, and any other request waits (at most
//!   [`ConnLimits::body_read_timeout`], then 503) until a regular connection closes and its
//!   slot passes to this one. So an orchestrator's liveness probe still answers while clients
//!   that stopped reading hold every regular slot. Past both, the loop stops accepting and new
//!   connections wait in the kernel's listen backlog until one closes.
//! - Accept errors (EMFILE when the process is out of file descriptors, …) are counted and
//!   logged at most once per [`LOG_EVERY`], and the loop backs off instead of spinning.
//! - On shutdown the listener closes, every connection is asked to finish its current request
//!   and close, and after the grace period whatever is still open is closed by force.
//!
//! - Every request head is checked against the framing rules of vLLM's parser before hyper
//!   sees it ([`crate::framing`]): what uvicorn refuses gets its 400 and the connection closes.
//!
//! The request body's own deadline is enforced above, in [`crate::middleware`].

use crate::framing::{refusal_response, FramingGuard, Refusals};
use axum::body::Body;
use axum::Router;
use futures_util::task::AtomicWaker;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The bounds on what one client may hold.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// From a connection's opening, or from the end of its previous response, until its next
    /// request head is complete. Also the idle keep-alive timeout (uvicorn's
    /// `timeout_keep_alive`, 5 s in vLLM).
    pub header_read_timeout: Duration,
    /// From the request head until the whole body has arrived.
    pub body_read_timeout: Duration,
    /// How long a response write may make no progress before the connection is closed.
    pub write_stall_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(60),
            write_stall_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// The most request headers one request may carry: vLLM's `h11_max_header_count` default.
pub const MAX_HEADERS: usize = 256;

/// Connections accepted beyond [`ConnLimits::max_connections`] for probes (see the module
/// documentation): enough for a few orchestrators' liveness and readiness checks and a
/// metrics scraper at once.
pub const PROBE_RESERVE: usize = 8;

/// Paths answered on a connection that holds no regular slot: cheap, fixed-size answers that
/// orchestrators and scrapers poll.
const PROBE_PATHS: [&str; 5] = ["/health", "/ping", "/metrics", "/load", "/version"];

/// After the grace period the engine requests still running are aborted; their responses get
/// this long to send their last chunk before their connections are closed by force.
pub const ABORT_FLUSH: Duration = Duration::from_secs(1);

/// Repeated accept failures and limit hits are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// First and longest pause after an accept failure for want of resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the accept loop has seen ([`crate::Server::conn_stats`]).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Times a connection was accepted with every regular slot taken (it may serve probes
    /// only until one frees), or the loop stopped accepting because the probe reserve was
    /// full as well.
    pub limit_reached: AtomicU64,
    /// Requests other than probes that waited on a reserve connection for longer than the
    /// body timeout for a regular slot, and got 503.
    pub slot_wait_timeouts: AtomicU64,
    /// Connections closed by force at the end of a shutdown.
    pub forced_closed: AtomicU64,
}

/// A message logged at most once per [`LOG_EVERY`], with how many were held back.
struct ThrottledLog {
    last: Option<Instant>,
    held_back: u64,
}

impl ThrottledLog {
    fn new() -> Self {
        ThrottledLog {
            last: None,
            held_back: 0,
        }
    }

    fn log(&mut self, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < LOG_EVERY) {
            self.held_back += 1;
            return;
        }
        let more = match std::mem::take(&mut self.held_back) {
            0 => String::new(),
            n => format!(" ({n} more since the last report)"),
        };
        eprintln!("llm-emu serve: {}{more}", msg());
        self.last = Some(now);
    }
}

/// An accept failure that more attempts cannot fix until something is freed.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The open connections of a server that has stopped accepting.
pub struct Draining {
    tasks: JoinSet<()>,
    shutdown: watch::Sender<bool>,
    stats: Arc<ConnStats>,
}

/// Accepts and serves connections until `stop` resolves; then closes the listener and returns
/// the connections still open.
pub async fn accept_until(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stats: Arc<ConnStats>,
    stop: impl Future<Output = ()>,
) -> Draining {
    let (shutdown, _) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut accept_log = ThrottledLog::new();
    let mut limit_log = ThrottledLog::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let max = limits.max_connections.max(1);
    let regular_slots = Arc::new(Semaphore::new(max));
    tokio::pin!(stop);
    loop {
        if tasks.len() >= max + PROBE_RESERVE {
            stats.limit_reached.fetch_add(1, Ordering::Relaxed);
            limit_log.log(|| {
                format!(
                    "{max} connections open (--max-connections) and {PROBE_RESERVE} more for \
                     probes: new connections wait in the listen backlog until one closes"
                )
            });
            tokio::select! {
                biased;
                _ = &mut stop => break,
                done = tasks.join_next() => reap(done),
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut stop => break,
            done = tasks.join_next(), if !tasks.is_empty() => reap(done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    // Every response write goes out at once (TCP_NODELAY), as asyncio sets it
                    // on the sockets of vLLM's server: with Nagle's algorithm a small SSE chunk
                    // waits for the client's delayed ACK of the previous one, up to 40 ms.
                    let _ = tcp.set_nodelay(true);
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let permit = regular_slots.clone().try_acquire_owned().ok();
                    if permit.is_none() {
                        stats.limit_reached.fetch_add(1, Ordering::Relaxed);
                        limit_log.log(|| {
                            format!(
                                "{max} connections open (--max-connections): a new connection \
                                 serves probes only until one closes"
                            )
                        });
                    }
                    let conn = serve_connection(
                        tcp,
                        peer,
                        app.clone(),
                        limits.clone(),
                        SlotGate::new(regular_slots.clone(), permit),
                        shutdown.subscribe(),
                        stats.clone(),
                    );
                    tasks.spawn(conn);
                }
                Err(e) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    let total = stats.accept_errors.load(Ordering::Relaxed);
                    if is_resource_exhaustion(&e) {
                        let open = tasks.len();
                        accept_log.log(|| {
                            format!(
                                "accept failed: {e} ({open} connections open, {total} accept \
                                 errors in all); pausing {} ms",
                                backoff.as_millis()
                            )
                        });
                        tokio::select! {
                            _ = &mut stop => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    } else {
                        // Per-connection failures (ECONNABORTED, …): the next accept is fine.
                        accept_log.log(|| format!("accept failed: {e} ({total} accept errors in all)"));
                    }
                }
            },
        }
    }
    drop(listener);
    Draining {
        tasks,
        shutdown,
        stats,
    }
}

fn reap(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(e)) = done {
        if e.is_panic() {
            eprintln!("llm-emu serve: a connection task panicked: {e}");
        }
    }
}

impl Draining {
    /// Asks every connection to finish its request in flight and close (idle ones close at
    /// once); after `grace` calls `on_grace` (which aborts the engine requests still running),
    /// waits [`ABORT_FLUSH`] for their last chunks, then closes whatever is still open.
    /// Returns how many connections were closed by force.
    pub async fn drain(mut self, grace: Duration, on_grace: impl FnOnce()) -> usize {
        let _ = self.shutdown.send(true);
        if self.all_closed_within(grace).await {
            return 0;
        }
        on_grace();
        if self.all_closed_within(ABORT_FLUSH).await {
            return 0;
        }
        let forced = self.tasks.len();
        self.stats
            .forced_closed
            .fetch_add(forced as u64, Ordering::Relaxed);
        self.tasks.shutdown().await;
        forced
    }

    async fn all_closed_within(&mut self, limit: Duration) -> bool {
        let all_closed = async {
            while let Some(done) = self.tasks.join_next().await {
                reap(Some(done));
            }
        };
        tokio::time::timeout(limit, all_closed).await.is_ok()
    }
}

/// Serves one connection until it closes, fails a timeout, or is told to shut down.
async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    limits: ConnLimits,
    slot: SlotGate,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ConnStats>,
) {
    stats.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(stats.clone());
    let app = TowerToHyperService::new(app);
    let slot = Arc::new(slot);
    let slot_wait = limits.body_read_timeout;
    let refusals = Arc::new(Refusals::default());
    let guard = FramingGuard::new(tcp, refusals.clone());
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // Counted for every request, in order, before anything else.
        let refused = refusals.next_is_refused();
        // The client's address, for the access log (axum's `ConnectInfo`).
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let app = app.clone();
        let slot = slot.clone();
        let stats = stats.clone();
        async move {
            if refused {
                return Ok(refusal_response());
            }
            if !slot.admit(req.uri().path(), slot_wait).await {
                stats.slot_wait_timeouts.fetch_add(1, Ordering::Relaxed);
                return Ok(no_slot_response(slot_wait));
            }
            app.call(req).await
        }
    });
    let io = TokioIo::new(StallGuard::new(guard, limits.write_stall_timeout));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let stop_asked = WokenOnly::new(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    tokio::select! {
        // Timeouts and client errors end the connection; they are not worth a log line each.
        _ = conn.as_mut() => return,
        () = stop_asked => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A future polled only after it has woken its task (and once at the start). The connection
/// task wakes for every streamed chunk; polling the shutdown signal each time would take the
/// `watch` channel's waiter lock, which every connection shares, once per chunk.
struct WokenOnly<F> {
    fut: Pin<Box<F>>,
    gate: Arc<WakeGate>,
}

/// Set when the inner future's waker fires; wakes the task that polls the [`WokenOnly`].
struct WakeGate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for WakeGate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WokenOnly<F> {
    fn new(fut: F) -> Self {
        WokenOnly {
            fut: Box::pin(fut),
            gate: Arc::new(WakeGate {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(this.gate.clone());
        this.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

/// A connection's claim on one of the `max_connections` regular slots: taken at accept when one
/// is free, else on the connection's first request that is not a probe (waiting for a slot to
/// free), and held until the connection closes.
struct SlotGate {
    slots: Arc<Semaphore>,
    held: tokio::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl SlotGate {
    /// `held`: the slot taken at accept, if one was free.
    fn new(slots: Arc<Semaphore>, held: Option<OwnedSemaphorePermit>) -> Self {
        SlotGate {
            slots,
            held: tokio::sync::Mutex::new(held),
        }
    }

    /// Whether a request for `path` may be served now: always for a probe or when the
    /// connection holds a slot; otherwise after waiting at most `limit` for a slot.
    async fn admit(&self, path: &str, limit: Duration) -> bool {
        if PROBE_PATHS.contains(&path) {
            return true;
        }
        // HTTP/1 serves one request at a time per connection, so this lock is never contended.
        let mut held = self.held.lock().await;
        if held.is_some() {
            return true;
        }
        match tokio::time::timeout(limit, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => {
                *held = Some(permit);
                true
            }
            _ => false,
        }
    }
}

/// The answer to a request that found no regular slot within the wait limit.
fn no_slot_response(waited: Duration) -> Response<Body> {
    let mut r = Response::new(Body::from(format!(
        "Service Unavailable: every connection slot (--max-connections) stayed taken for {} s\n",
        waited.as_secs_f64()
    )));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// Counts a connection in [`ConnStats::open`] while its task lives (a forced close drops it).
struct OpenGuard(Arc<ConnStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket whose writes fail with `TimedOut` once one has been pending (the client's receive
/// window full: it stopped reading) for longer than the stall limit.
pub struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write said `Pending`: starts the stall clock if it is not running, and
    /// fails once it has run out (the sleep also wakes the task when it does).
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs_f64()),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn on_write<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => match self.check_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.on_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.on_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.on_write(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Counts its polls and keeps the last waker it was given; ready once `done` is set.
    #[derive(Default)]
    struct Probe {
        polls: usize,
        waker: Option<Waker>,
        done: bool,
    }

    #[test]
    fn a_woken_only_future_is_polled_only_after_its_own_wake() {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let inner = {
            let probe = probe.clone();
            std::future::poll_fn(move |cx| {
                let mut p = probe.lock().unwrap();
                p.polls += 1;
                p.waker = Some(cx.waker().clone());
                if p.done {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        };
        let mut gated = WokenOnly::new(inner);
        let task = Arc::new(CountingWaker::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        // Polled at the start, then not again while nothing woke it.
        for _ in 0..5 {
            assert!(Pin::new(&mut gated).poll(&mut cx).is_pending());
        }
        assert_eq!(probe.lock().unwrap().polls, 1);
        assert_eq!(task.wakes.load(Ordering::SeqCst), 0);
        // Its own wake wakes the task and lets the next poll through.
        let inner_waker = probe.lock().unwrap().waker.take().unwrap();
        probe.lock().unwrap().done = true;
        inner_waker.wake();
        assert_eq!(task.wakes.load(Ordering::SeqCst), 1);
        assert!(Pin::new(&mut gated).poll(&mut cx).is_ready());
        assert_eq!(probe.lock().unwrap().polls, 2);
    }

    #[derive(Default)]
    struct CountingWaker {
        wakes: AtomicU64,
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }
}
