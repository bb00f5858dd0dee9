//! The engine on the wall clock: one OS thread owns the synchronous [`Engine`] (vLLM's
//! `EngineCore` process) and the HTTP tasks talk to it through channels (vLLM's ZMQ sockets).
//!
//! Engine time is nanoseconds since the server started, read from a monotonic clock. The loop:
//! take in every queued command (add / abort), `engine.run(now)`, which delivers each step's
//! tokens and finishes to the per-request channels through [`Router`], then wait for the next
//! command or until the absolute deadline `Wake::At(t)`. Waiting on an absolute deadline (rather
//! than sleeping a step's length) keeps thousands of steps free of drift; how late each wake is
//! goes into a histogram ([`LatenessStats`]).

use crate::metrics::EngineMetrics;
use crate::thread_priority::{raise_current_thread, PriorityGranted, PriorityRequest};
use hdrhistogram::Histogram;
use llm_emu_core::sched::{ReqKey, RequestUpdate, Scheduler};
use llm_emu_core::{
    Engine, EngineObserver, FinishReason, Nanos, NewRequest, Request, RequestError, Wake,
};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long before a deadline the engine thread stops sleeping and spins.
const SPIN: Nanos = Nanos::from_micros(100);

/// The server's clock: engine time is the time since this instant.
#[derive(Copy, Clone, Debug)]
pub struct EngineClock {
    start: Instant,
}

impl EngineClock {
    pub fn start_now() -> EngineClock {
        EngineClock {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Nanos {
        Nanos(self.start.elapsed().as_nanos() as u64)
    }
}

/// How a request ended, as the output processor needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub reason: FinishReason,
    /// The stop token id that ended it (`stop_reason` in the API), if one did.
    pub stop_token: Option<u32>,
    /// Prompt tokens found in the prefix cache.
    pub num_cached_tokens: usize,
}

/// What the engine tells one request's HTTP task.
#[derive(Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// One step's output: a new token, and the finish if this token ended the request.
    /// `step_end`: the engine time the engine thread processed the step's end (the step's
    /// planned end plus the wake lateness), for the delivery-path figure.
    Token {
        token: u32,
        finish: Option<Finish>,
        step_end: Nanos,
    },
    /// Finished without a new token (aborted).
    Finished(Finish),
    /// Refused at submission; it never ran.
    Rejected(RequestError),
}

/// Where one request's events go: the HTTP request's channel, shared by its choices.
pub type EventSender = UnboundedSender<(u32, EngineEvent)>;

/// What the HTTP side asks of the engine thread.
pub enum Command {
    /// The engine requests of one HTTP request (its prompts × `n` choices), taken in together
    /// so that they reach the same scheduling step, as vLLM's fan-out of a parent request does.
    Add {
        /// Each request with its tag, returned with each of its events (the choice's index
        /// within its HTTP request).
        requests: Vec<(NewRequest, u32)>,
        events: EventSender,
    },
    Abort(String),
    /// End a request the output processor stopped (a stop string): an abort in the engine,
    /// counted with finish reason `stop` as vLLM counts it.
    Stop(String),
    /// Abort every live request (the end of a graceful shutdown's grace period).
    AbortAll,
    /// Stop the thread (after the HTTP server has stopped).
    Shutdown,
}

/// A histogram of durations in microseconds, 1 µs to 10 s, three significant digits.
fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 10_000_000, 3).expect("valid bounds")
}

/// Records `d` in microseconds (below 1 µs counts as 1 µs, above 10 s as 10 s).
fn record_micros(h: &mut Histogram<u64>, d: Nanos) {
    h.saturating_record((d.0 / 1_000).clamp(1, 10_000_000));
}

/// Wake-up lateness of the engine thread: how long after a step's planned end it actually ran.
pub struct LatenessStats {
    /// Microseconds, 1 µs to 10 s.
    hist: Histogram<u64>,
    /// Engine-thread work per wake (commands, `run`, output delivery), microseconds.
    busy: Histogram<u64>,
    /// Input path: from the HTTP handler's submission (the request's arrival time) to the
    /// engine thread taking the request in, microseconds.
    admit: Histogram<u64>,
}

impl Default for LatenessStats {
    fn default() -> Self {
        LatenessStats {
            hist: micros_histogram(),
            busy: micros_histogram(),
            admit: micros_histogram(),
        }
    }
}

impl LatenessStats {
    fn record(&mut self, late: Nanos) {
        record_micros(&mut self.hist, late);
    }

    fn record_busy(&mut self, d: Nanos) {
        record_micros(&mut self.busy, d);
    }

    fn record_admit(&mut self, d: Nanos) {
        record_micros(&mut self.admit, d);
    }

    pub fn summary(&self) -> LatenessSummary {
        LatenessSummary {
            wakes: self.hist.len(),
            p50_us: self.hist.value_at_quantile(0.5),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            busy_p50_us: self.busy.value_at_quantile(0.5),
            busy_p99_us: self.busy.value_at_quantile(0.99),
            busy_max_us: self.busy.max(),
            admit: PathSummary::of(&self.admit),
        }
    }
}

/// A snapshot of [`LatenessStats`] (values below 1 µs count as 1 µs).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LatenessSummary {
    pub wakes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Engine-thread work per wake-up.
    pub busy_p50_us: u64,
    pub busy_p99_us: u64,
    pub busy_max_us: u64,
    /// Input path (HTTP submission → engine thread).
    pub admit: PathSummary,
}

/// Mean and quantiles of one serving-path histogram, microseconds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct PathSummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl PathSummary {
    fn of(h: &Histogram<u64>) -> PathSummary {
        PathSummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        }
    }
}

/// Output path of each request's first token, written by the HTTP tasks only (never locked by
/// the real-time engine thread, which must not wait on a lock an ordinary thread holds).
pub struct DeliveryStats {
    /// From the engine thread processing the step's end to the HTTP task taking the token, µs.
    taken: Histogram<u64>,
    /// Detokenizing the first token, µs: it primes the incremental detokenizer with the whole
    /// prompt (tokenizers' `DecodeStream(ids=prompt)`, as vLLM 0.19 does), so it grows with the
    /// prompt's length.
    detokenized: Histogram<u64>,
}

impl Default for DeliveryStats {
    fn default() -> Self {
        DeliveryStats {
            taken: micros_histogram(),
            detokenized: micros_histogram(),
        }
    }
}

impl DeliveryStats {
    pub fn record_first_token(&mut self, taken: Nanos, detokenized: Nanos) {
        for (h, d) in [
            (&mut self.taken, taken),
            (&mut self.detokenized, detokenized),
        ] {
            record_micros(h, d);
        }
    }

    pub fn summary(&self) -> DeliverySummary {
        DeliverySummary {
            taken: PathSummary::of(&self.taken),
            detokenized: PathSummary::of(&self.detokenized),
        }
    }
}

/// A snapshot of [`DeliveryStats`].
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct DeliverySummary {
    pub taken: PathSummary,
    pub detokenized: PathSummary,
}

/// The HTTP side's handle on the engine thread.
#[derive(Clone)]
pub struct EngineHandle {
    commands: Sender<Command>,
    pub clock: EngineClock,
    pub lateness: Arc<Mutex<LatenessStats>>,
    /// First-token delivery path, recorded by the HTTP tasks.
    pub delivery: Arc<Mutex<DeliveryStats>>,
    /// Requests submitted and not yet finished (vLLM's `/load` counts server-side requests).
    pub metrics: Arc<EngineMetrics>,
    /// The CPU priority the engine thread got.
    pub priority: PriorityGranted,
    /// Cleared when the engine thread ends, by return or by panic.
    alive: Arc<AtomicBool>,
}

/// Clears the engine's liveness flag when the engine thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl EngineHandle {
    /// Whether the engine thread still runs (vLLM's `check_health`: `/health` answers 503
    /// once the engine core is dead).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Submits the engine requests of one HTTP request (each with its tag); their outputs
    /// arrive on `events`. Errors only if the engine thread is gone.
    pub fn add(
        &self,
        requests: Vec<(NewRequest, u32)>,
        events: EventSender,
    ) -> Result<(), EngineGone> {
        self.commands
            .send(Command::Add { requests, events })
            .map_err(|_| EngineGone)
    }

    /// Aborts a request; unknown or finished ids are ignored.
    pub fn abort(&self, request_id: &str) {
        let _ = self.commands.send(Command::Abort(request_id.to_string()));
    }

    /// Ends a request that matched a stop string.
    pub fn stop(&self, request_id: &str) {
        let _ = self.commands.send(Command::Stop(request_id.to_string()));
    }

    pub fn abort_all(&self) {
        let _ = self.commands.send(Command::AbortAll);
    }

    pub fn lateness(&self) -> LatenessSummary {
        self.lateness.lock().expect("lateness lock").summary()
    }
}

/// The engine thread stopped (it panicked or was shut down).
#[derive(Debug, thiserror::Error)]
#[error("the engine is not running")]
pub struct EngineGone;

/// The running engine thread.
pub struct EngineThread {
    pub handle: EngineHandle,
    join: JoinHandle<()>,
    commands: Sender<Command>,
}

impl EngineThread {
    /// Starts the thread that owns `engine`, raised as `priority` asks.
    pub fn spawn(
        engine: Engine,
        metrics: Arc<EngineMetrics>,
        priority: PriorityRequest,
    ) -> std::io::Result<EngineThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let clock = EngineClock::start_now();
        let lateness = Arc::new(Mutex::new(LatenessStats::default()));
        let (granted_tx, granted_rx) = std::sync::mpsc::channel();
        let (thread_metrics, thread_lateness) = (metrics.clone(), lateness.clone());
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = AliveGuard(alive.clone());
        let join = std::thread::Builder::new()
            .name("llm-emu-engine".into())
            .spawn(move || {
                let _alive = thread_alive;
                let _ = granted_tx.send(raise_current_thread(priority));
                let mut l = EngineLoop {
                    engine,
                    clock,
                    router: Router::new(thread_metrics),
                    lateness: thread_lateness,
                };
                l.run(rx)
            })?;
        let priority = granted_rx
            .recv()
            .unwrap_or_else(|_| PriorityGranted::Normal("the engine thread ended".into()));
        let handle = EngineHandle {
            commands: tx.clone(),
            clock,
            lateness,
            delivery: Default::default(),
            metrics,
            priority,
            alive,
        };
        Ok(EngineThread {
            handle,
            join,
            commands: tx,
        })
    }

    /// Stops the thread and waits for it; live requests are aborted.
    pub fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.join.join();
    }
}

struct EngineLoop {
    engine: Engine,
    clock: EngineClock,
    router: Router,
    lateness: Arc<Mutex<LatenessStats>>,
}

impl EngineLoop {
    fn run(&mut self, rx: Receiver<Command>) {
        let mut planned: Option<Nanos> = None;
        loop {
            // Take in everything queued, then run the engine at the current time.
            loop {
                match rx.try_recv() {
                    Ok(cmd) => {
                        if !self.apply(cmd) {
                            return self.stop();
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return self.stop(),
                }
            }
            let now = self.clock.now();
            if let Some(deadline) = planned.take() {
                if now >= deadline {
                    self.lateness
                        .lock()
                        .expect("lateness lock")
                        .record(now - deadline);
                }
            }
            let wake = self.engine.run(now, &mut self.router);
            self.router.publish_gauges(self.engine.scheduler());
            let busy = self.clock.now().saturating_sub(now);
            self.lateness
                .lock()
                .expect("lateness lock")
                .record_busy(busy);
            match wake {
                Wake::Idle => match rx.recv() {
                    Ok(cmd) => {
                        if !self.apply(cmd) {
                            return self.stop();
                        }
                    }
                    Err(_) => return self.stop(),
                },
                Wake::At(deadline) => {
                    // Commands that arrive while the device step runs are queued in the engine
                    // (vLLM takes them in after the step's output is processed); keep waiting for
                    // the deadline itself. The last stretch is spun: a timed futex wait wakes tens
                    // of microseconds late.
                    loop {
                        let now = self.clock.now();
                        if now >= deadline {
                            break;
                        }
                        let left = deadline - now;
                        let got = if left > SPIN {
                            match rx.recv_timeout(Duration::from_nanos((left - SPIN).0)) {
                                Ok(cmd) => Some(cmd),
                                Err(RecvTimeoutError::Timeout) => None,
                                Err(RecvTimeoutError::Disconnected) => return self.stop(),
                            }
                        } else {
                            match rx.try_recv() {
                                Ok(cmd) => Some(cmd),
                                Err(std::sync::mpsc::TryRecvError::Empty) => {
                                    std::hint::spin_loop();
                                    None
                                }
                                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                    return self.stop()
                                }
                            }
                        };
                        if let Some(cmd) = got {
                            if !self.apply(cmd) {
                                return self.stop();
                            }
                        }
                    }
                    planned = Some(deadline);
                }
            }
        }
    }

    /// Applies one command; false means stop.
    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Add { requests, events } => {
                let now = self.clock.now();
                {
                    let mut stats = self.lateness.lock().expect("lateness lock");
                    for (request, _) in &requests {
                        stats.record_admit(now.saturating_sub(request.arrival));
                    }
                }
                for (request, tag) in requests {
                    let id = request.request_id.clone();
                    match self.engine.add_request(request) {
                        Ok(()) => {
                            self.router.pending.insert(id, (tag, events.clone()));
                        }
                        Err(e) => {
                            let _ = events.send((tag, EngineEvent::Rejected(e)));
                        }
                    }
                }
            }
            Command::Abort(id) => self.engine.abort(&id),
            Command::Stop(id) => {
                self.engine.abort(&id);
                self.router.stopped.insert(id);
            }
            Command::AbortAll => {
                for id in self.router.live_ids() {
                    self.engine.abort(&id);
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Aborts what is left so that every HTTP task sees its request end.
    fn stop(&mut self) {
        for id in self.router.live_ids() {
            self.engine.abort(&id);
        }
        let now = self.clock.now();
        // Aborts are applied when the engine takes in inputs; run until it has nothing queued
        // or in flight that still owes an answer.
        let mut guard = 0;
        while !self.router.is_empty() && guard < 1000 {
            let now2 = now.max(self.clock.now());
            match self.engine.run(now2, &mut self.router) {
                Wake::Idle => break,
                Wake::At(t) => {
                    let wait = t.saturating_sub(self.clock.now());
                    std::thread::sleep(Duration::from_nanos(wait.0));
                }
            }
            guard += 1;
        }
    }
}

/// Delivers engine outputs to the per-request channels and records the per-request metrics.
struct Router {
    /// Submitted, not yet taken in by the engine loop.
    pending: FxHashMap<String, (u32, EventSender)>,
    live: FxHashMap<ReqKey, (u32, EventSender)>,
    keys: FxHashMap<String, ReqKey>,
    /// Requests ended by a stop string, whose engine abort counts as `stop`.
    stopped: rustc_hash::FxHashSet<String>,
    metrics: Arc<EngineMetrics>,
    /// Reused per step: time-to-first-token and inter-token gaps seen in the step.
    ttfts: Vec<Nanos>,
    itls: Vec<Nanos>,
}

impl Router {
    fn new(metrics: Arc<EngineMetrics>) -> Router {
        Router {
            pending: Default::default(),
            live: Default::default(),
            keys: Default::default(),
            stopped: Default::default(),
            metrics,
            ttfts: Vec::new(),
            itls: Vec::new(),
        }
    }

    fn live_ids(&self) -> Vec<String> {
        self.keys
            .keys()
            .chain(self.pending.keys())
            .cloned()
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty() && self.pending.is_empty()
    }

    fn publish_gauges(&self, sched: &Scheduler) {
        self.metrics.publish_scheduler(sched);
    }

    fn finish_of(req: &Request) -> Finish {
        let reason = match req.status {
            llm_emu_core::request::RequestStatus::Finished(r) => r,
            _ => FinishReason::Abort,
        };
        Finish {
            reason,
            stop_token: req.stop_reason,
            num_cached_tokens: req.num_cached_tokens.unwrap_or(0),
        }
    }
}

impl EngineObserver for Router {
    fn on_queued(&mut self, _now: Nanos, key: ReqKey, sched: &Scheduler) {
        let Some(req) = sched.request(key) else {
            return;
        };
        if let Some(tx) = self.pending.remove(&req.request_id) {
            self.keys.insert(req.request_id.clone(), key);
            self.live.insert(key, tx);
        }
    }

    fn on_update(&mut self, now: Nanos, updates: &[RequestUpdate], sched: &Scheduler) {
        // Metrics first, so that a client that has its last token also finds it counted.
        let mut prompt_tokens = 0u64;
        let mut generation_tokens = 0u64;
        for u in updates {
            if u.new_token.is_none() {
                continue;
            }
            generation_tokens += 1;
            let req = match (&u.finished, sched.request(u.key)) {
                (Some(r), _) => Some(&**r),
                (None, r) => r,
            };
            if let Some(r) = req {
                if r.num_output_tokens() == 1 {
                    prompt_tokens += r.num_prompt_tokens() as u64;
                    self.ttfts.push(now.saturating_sub(r.times.arrival));
                }
            }
            if let Some(prev) = u.prev_token_at {
                self.itls.push(now.saturating_sub(prev));
            }
            if let Some(r) = &u.finished {
                let reason = Self::finish_of(r).reason;
                self.metrics.observe_finished(now, r, reason);
            }
        }
        self.metrics
            .add_step_tokens(prompt_tokens, generation_tokens);
        self.metrics
            .observe_token_latencies(&self.ttfts, &self.itls);
        self.ttfts.clear();
        self.itls.clear();
        self.metrics.publish_scheduler(sched);
        for u in updates {
            let Some(token) = u.new_token else { continue };
            match &u.finished {
                Some(req) => {
                    self.keys.remove(&req.request_id);
                    if !self.stopped.is_empty() {
                        self.stopped.remove(&req.request_id);
                    }
                    if let Some((tag, tx)) = self.live.remove(&u.key) {
                        let finish = Some(Self::finish_of(req));
                        let ev = EngineEvent::Token {
                            token,
                            finish,
                            step_end: now,
                        };
                        let _ = tx.send((tag, ev));
                    }
                }
                None => {
                    if let Some((tag, tx)) = self.live.get(&u.key) {
                        let finish = None;
                        let ev = EngineEvent::Token {
                            token,
                            finish,
                            step_end: now,
                        };
                        let _ = tx.send((*tag, ev));
                    }
                }
            }
        }
    }

    fn on_abort(&mut self, now: Nanos, finished: &[Box<Request>], sched: &Scheduler) {
        self.metrics.publish_scheduler(sched);
        for req in finished {
            let mut finish = Self::finish_of(req);
            if self.stopped.remove(&req.request_id) {
                finish.reason = FinishReason::Stop;
            }
            self.metrics.observe_finished(now, req, finish.reason);
            if let Some(key) = self.keys.remove(&req.request_id) {
                if let Some((tag, tx)) = self.live.remove(&key) {
                    let _ = tx.send((tag, EngineEvent::Finished(finish)));
                }
            }
        }
    }
}
