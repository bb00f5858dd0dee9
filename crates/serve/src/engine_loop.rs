//! The engine on the wall clock: one OS thread owns the synchronous engine (any
//! [`EngineCore`](llm_emu_core::EngineCore): vLLM's `EngineCore` process) and the HTTP tasks
//! talk to it through channels (vLLM's ZMQ sockets).
//!
//! Engine time is nanoseconds since the server started, read from a monotonic clock. The loop:
//! take in every queued command (add / abort), `engine.run(now)`, which delivers each step's
//! tokens and finishes to the per-request channels through [`Router`], then wait for the next
//! command or until the absolute deadline `Wake::At(t)`. Waiting on an absolute deadline (rather
//! than sleeping a step's length) keeps thousands of steps free of drift; how late each wake is
//! goes into a histogram ([`LatenessStats`]).
//!
//! The engine may be a fleet (data-parallel ranks or replicas, [`ServedCore`]): the same one
//! thread then runs each engine when its own wake-up is due, so every engine keeps its exact
//! step timeline, and places each request where the HTTP request's [`Placement`] says.
//!
//! The thread owns everything it measures (the Prometheus series, its lateness histograms) and
//! publishes copies ([`Published`]); it never waits on a lock an HTTP task can hold for longer
//! than a pointer swap.

use crate::fleet_front::{take_placement, Placement, ServedCore};
use crate::kv_events::KvEventSender;
use crate::metrics::{EngineMetrics, MetricsRecorder, Published};
use crate::thread_priority::{raise_current_thread, PriorityGranted, PriorityRequest};
use hdrhistogram::Histogram;
use llm_emu_core::{
    EngineSink, FinishOutput, FinishReason, IterationStats, Nanos, NewRequest, RequestError,
    RequestOutput, StepStats, Wake,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// How long before a deadline the engine thread stops sleeping and spins.
const SPIN: Nanos = Nanos::from_micros(100);

/// The longest the published lateness summary lags behind while the engine is busy.
const LATENESS_PUBLISH_EVERY: Nanos = Nanos::from_millis(50);

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
        /// Where they go, and the request parameters to count on the engine they go to.
        placement: Placement,
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
    /// The engine thread's latest summary of its [`LatenessStats`].
    lateness: Arc<Published<LatenessSummary>>,
    /// First-token delivery path, recorded by the HTTP tasks.
    pub delivery: Arc<Mutex<DeliveryStats>>,
    /// Requests submitted and not yet finished (vLLM's `/load` counts server-side requests).
    pub metrics: Arc<EngineMetrics>,
    /// The CPU priority the engine thread got.
    pub priority: PriorityGranted,
    /// Cleared when the engine thread ends, by return or by panic.
    alive: Arc<AtomicBool>,
    /// The engine every request of this handle goes to (an instance's own port).
    pinned: Option<usize>,
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

    /// A handle whose requests all go to engine `engine`, its metrics seen through
    /// `metrics` (an instance's own port).
    pub fn pinned_to(&self, engine: usize, metrics: Arc<EngineMetrics>) -> EngineHandle {
        EngineHandle {
            pinned: Some(engine),
            metrics,
            delivery: Default::default(),
            ..self.clone()
        }
    }

    /// The engine this handle's requests go to, if it is pinned to one.
    pub fn pinned(&self) -> Option<usize> {
        self.pinned
    }

    /// Submits the engine requests of one HTTP request (each with its tag); their outputs
    /// arrive on `events`. Where they go is the HTTP request's [`Placement`] (taken from the
    /// task it runs in), or this handle's engine. Errors only if the engine thread is gone.
    pub fn add(
        &self,
        requests: Vec<(NewRequest, u32)>,
        events: EventSender,
    ) -> Result<(), EngineGone> {
        let mut placement = take_placement();
        if self.pinned.is_some() {
            placement.engine = self.pinned;
        }
        self.commands
            .send(Command::Add {
                requests,
                events,
                placement,
            })
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

    /// The engine thread's wake lateness and serving-path figures, as last published (at most
    /// [`LATENESS_PUBLISH_EVERY`] old while it runs, current once it is idle; the counts are
    /// current once a request ends).
    pub fn lateness(&self) -> LatenessSummary {
        *self.lateness.get()
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
    /// Starts the thread that owns `engine`, raised as `priority` asks. `metrics` is where the
    /// thread publishes its Prometheus series.
    pub fn spawn<E: ServedCore + Send + 'static>(
        engine: E,
        metrics: Arc<EngineMetrics>,
        priority: PriorityRequest,
    ) -> std::io::Result<EngineThread> {
        EngineThread::spawn_with_kv_events(engine, metrics, priority, None)
    }

    /// [`EngineThread::spawn`], draining each engine's KV cache events into `kv_events` after
    /// every run (the engines must have events enabled).
    pub fn spawn_with_kv_events<E: ServedCore + Send + 'static>(
        engine: E,
        metrics: Arc<EngineMetrics>,
        priority: PriorityRequest,
        kv_events: Option<KvEventSender>,
    ) -> std::io::Result<EngineThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let clock = EngineClock::start_now();
        let lateness = Arc::new(Published::new(LatenessStats::default().summary()));
        let (granted_tx, granted_rx) = std::sync::mpsc::channel();
        let recorder = metrics.recorder();
        let thread_lateness = lateness.clone();
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = AliveGuard(alive.clone());
        let join = std::thread::Builder::new()
            .name("llm-emu-engine".into())
            .spawn(move || {
                let _alive = thread_alive;
                let _ = granted_tx.send(raise_current_thread(priority));
                let mut l = EngineLoop {
                    engine,
                    kv_events,
                    clock,
                    router: Router {
                        routes: Routes::default(),
                        metrics: recorder,
                        lateness: LatenessStats::default(),
                        lateness_out: thread_lateness,
                        lateness_published_at: Nanos::ZERO,
                        lateness_published: LatenessStats::default().summary(),
                        lateness_dirty: false,
                        later: Vec::new(),
                    },
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
            pinned: None,
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

struct EngineLoop<E> {
    engine: E,
    /// Where each run's KV cache events go (`--kv-events-config`).
    kv_events: Option<KvEventSender>,
    clock: EngineClock,
    router: Router,
}

impl<E: ServedCore> EngineLoop<E> {
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
                    self.router.lateness.record(now - deadline);
                }
            }
            let wake = self.engine.run(now, &mut self.router);
            self.drain_kv_events();
            self.router.metrics.publish();
            let busy = self.clock.now().saturating_sub(now);
            self.router.lateness.record_busy(busy);
            self.router.lateness_dirty = true;
            match wake {
                Wake::Idle => {
                    self.router.publish_lateness(now, true);
                    match rx.recv() {
                        Ok(cmd) => {
                            if !self.apply(cmd) {
                                return self.stop();
                            }
                        }
                        Err(_) => return self.stop(),
                    }
                }
                Wake::At(deadline) => {
                    self.router.publish_lateness(now, false);
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
            Command::Add {
                requests,
                events,
                placement,
            } => {
                let now = self.clock.now();
                for (request, _) in &requests {
                    self.router
                        .lateness
                        .record_admit(now.saturating_sub(request.arrival));
                }
                self.router.lateness_dirty = true;
                let mut first_engine = None;
                for (request, choice) in requests {
                    let route = Route {
                        choice,
                        events: events.clone(),
                        request_id: request.request_id.clone(),
                        started: false,
                    };
                    let tag = self.router.routes.insert(route);
                    match self.engine.add_placed(request, tag, &placement) {
                        Ok(engine) => {
                            first_engine.get_or_insert(engine);
                        }
                        Err(e) => {
                            self.router.routes.remove(tag);
                            let _ = events.send((choice, EngineEvent::Rejected(e)));
                        }
                    }
                }
                // Counted on the engine its first request went to.
                if let Some(engine) = first_engine.or(placement.engine) {
                    self.router
                        .metrics
                        .request_params(engine, &placement.params);
                }
            }
            Command::Abort(id) => self.engine.abort(&id),
            Command::Stop(id) => self.engine.finish_stopped(&id),
            Command::AbortAll => {
                for id in self.router.routes.ids() {
                    self.engine.abort(&id);
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Hands each engine's KV cache events since the last run to the publishers (a move into
    /// a bounded queue per engine; encoding and sending happen on tokio tasks).
    fn drain_kv_events(&mut self) {
        if let Some(kv) = &self.kv_events {
            self.engine
                .each_engine(&mut |rank, e| kv.publish(rank, e.take_kv_cache_events()));
        }
    }

    /// Aborts what is left so that every HTTP task sees its request end.
    fn stop(&mut self) {
        for id in self.router.routes.ids() {
            self.engine.abort(&id);
        }
        let now = self.clock.now();
        // Aborts are applied when the engine takes in inputs; run until it has nothing queued
        // or in flight that still owes an answer.
        let mut guard = 0;
        while !self.router.routes.is_empty() && guard < 1000 {
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
        self.drain_kv_events();
        self.router.metrics.publish();
        self.router.publish_lateness(now, true);
    }
}

/// Where one engine request's outputs go.
struct Route {
    /// The tag of its events (the choice's index within its HTTP request).
    choice: u32,
    events: EventSender,
    /// For aborting every live request.
    request_id: String,
    /// Some output was delivered already (its first token is out).
    started: bool,
}

/// Live routes, indexed by the engine tag (a slot number; slots are reused once free).
#[derive(Default)]
struct Routes {
    slots: Vec<Option<Route>>,
    free: Vec<usize>,
    live: usize,
}

impl Routes {
    fn insert(&mut self, route: Route) -> u64 {
        self.live += 1;
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(route);
                i as u64
            }
            None => {
                self.slots.push(Some(route));
                (self.slots.len() - 1) as u64
            }
        }
    }

    fn get(&self, tag: u64) -> Option<&Route> {
        self.slots.get(tag as usize)?.as_ref()
    }

    fn get_mut(&mut self, tag: u64) -> Option<&mut Route> {
        self.slots.get_mut(tag as usize)?.as_mut()
    }

    fn remove(&mut self, tag: u64) -> Option<Route> {
        let r = self.slots.get_mut(tag as usize)?.take()?;
        self.free.push(tag as usize);
        self.live -= 1;
        Some(r)
    }

    fn ids(&self) -> Vec<String> {
        self.slots
            .iter()
            .flatten()
            .map(|r| r.request_id.clone())
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }
}

impl From<FinishOutput> for Finish {
    fn from(f: FinishOutput) -> Finish {
        Finish {
            reason: f.reason,
            stop_token: f.stop_token,
            num_cached_tokens: f.num_cached_tokens,
        }
    }
}

/// Delivers engine outputs to the per-request channels and keeps the thread's measurements.
struct Router {
    routes: Routes,
    metrics: MetricsRecorder,
    lateness: LatenessStats,
    lateness_out: Arc<Published<LatenessSummary>>,
    lateness_published_at: Nanos,
    /// The last full summary published.
    lateness_published: LatenessSummary,
    /// Recorded since the last full publish.
    lateness_dirty: bool,
    /// Scratch: the outputs of a step that go out after its first tokens (indices).
    later: Vec<usize>,
}

impl Router {
    /// Publishes the lateness summary if it changed and `force` or the last publish is older
    /// than [`LATENESS_PUBLISH_EVERY`] (its quantiles cost tens of µs to compute).
    fn publish_lateness(&mut self, now: Nanos, force: bool) {
        if self.lateness_dirty
            && (force || now.saturating_sub(self.lateness_published_at) >= LATENESS_PUBLISH_EVERY)
        {
            self.lateness_published = self.lateness.summary();
            self.lateness_out.set(self.lateness_published);
            self.lateness_published_at = now;
            self.lateness_dirty = false;
        }
    }

    /// Publishes the current counts (wakes, admissions) with the last full summary's
    /// quantiles, for a request's end: its client may read `/debug/engine` as soon as it has
    /// its last token. A copy, where the full summary walks three histograms (tens of µs, on
    /// a step's critical path before its outputs go out); the full one follows within
    /// [`LATENESS_PUBLISH_EVERY`] or at idle.
    fn publish_counts(&mut self) {
        let mut s = self.lateness_published;
        s.wakes = self.lateness.hist.len();
        s.admit.count = self.lateness.admit.len();
        self.lateness_out.set(s);
    }
}

impl EngineSink for Router {
    fn on_step(&mut self, step: &StepStats) {
        self.metrics.step(step);
    }

    fn on_iteration(&mut self, stats: &IterationStats, outputs: &[RequestOutput]) {
        // Metrics first, so that a client that has its last token also finds it counted.
        // vLLM's output batches hold the requests with a new token or an engine-side finish;
        // aborts and stop-string ends come from the frontend and produce none.
        let delivered = outputs.iter().filter(|o| o.new_token.is_some()).count();
        self.metrics.iteration(stats, delivered);
        self.metrics.publish();
        if !stats.finished_requests.is_empty() {
            self.publish_counts();
        }
        let now = stats.iteration_timestamp;
        // Each send wakes one HTTP task, and the runtime runs woken tasks in about the order
        // they were woken: first tokens go out first, so that a request's time to first token
        // does not wait behind the step's other streams.
        let mut later = std::mem::take(&mut self.later);
        later.clear();
        for (i, o) in outputs.iter().enumerate() {
            if self.routes.get(o.tag).is_some_and(|r| r.started) {
                later.push(i);
            } else {
                self.deliver(o, now);
            }
        }
        for &i in &later {
            self.deliver(&outputs[i], now);
        }
        self.later = later;
    }
}

impl Router {
    /// Sends one output to its request's channel; the route goes once the request finishes.
    fn deliver(&mut self, o: &RequestOutput, now: Nanos) {
        let ev = match (o.new_token, o.finish) {
            (Some(token), finish) => EngineEvent::Token {
                token,
                finish: finish.map(Finish::from),
                step_end: now,
            },
            (None, Some(f)) => EngineEvent::Finished(f.into()),
            (None, None) => return,
        };
        if o.finish.is_some() {
            if let Some(r) = self.routes.remove(o.tag) {
                let _ = r.events.send((r.choice, ev));
            }
        } else if let Some(r) = self.routes.get_mut(o.tag) {
            r.started = true;
            let _ = r.events.send((r.choice, ev));
        }
    }
}
