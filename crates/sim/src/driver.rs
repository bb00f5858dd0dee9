//! Runs a workload through the engine core in virtual time.
//!
//! Events (arrivals, pulled lazily from the workload one ahead; aborts; the engine's own
//! wake-ups, the end of the device step it waits on) go through one [`EventQueue`] ordered by
//! `(time, push order)`. At each instant every due event is taken in first, in that order, then
//! the engine runs once. A wake-up superseded by a later run is dropped without moving the clock.
//! Memory stays bounded by the requests in flight, whatever the workload's length.
//!
//! The driver is generic over [`EngineCore`]: it sees the engine's stats and outputs only
//! ([`EngineSink`]), never its scheduler.

use crate::client_side::ClientSide;
use crate::client_timeout::ClientTimeout;
use crate::events::{Event, EventQueue};
use crate::metrics::LatencyStats;
use crate::report::AtomicFile;
use crate::workload::{LineError, LineErrorKind, WorkloadItem};
use llm_emu_core::{
    EngineCore, EngineSink, FinishReason, FinishedRequestStats, IterationStats, Nanos, NewRequest,
    RequestOutput, SamplingParams, StepStats, Wake,
};
use serde::Serialize;
use std::io::Write;

/// One line of `--requests-out`.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    pub request_id: String,
    /// The engine index (DP rank or instance) that ran it; `None` when it was refused before
    /// reaching one.
    pub engine: Option<usize>,
    pub arrival_s: f64,
    pub queued_s: Option<f64>,
    pub first_scheduled_s: Option<f64>,
    pub first_token_s: Option<f64>,
    pub last_token_s: Option<f64>,
    pub prompt_len: usize,
    pub output_len: usize,
    pub cached_tokens: usize,
    pub num_preemptions: u32,
    pub finish_reason: Option<&'static str>,
    pub error: Option<String>,
}

/// One line of `--steps-out` (steps with tokens only).
#[derive(Debug, Serialize)]
pub struct StepLine {
    /// Which engine of a fleet took the step (the DP rank or the instance's position).
    pub engine: usize,
    pub time_s: f64,
    pub start_s: f64,
    pub end_s: f64,
    pub duration_ms: f64,
    pub num_reqs: usize,
    pub num_tokens: usize,
    /// Σ tokens already computed of the scheduled requests (the attention context).
    pub context_tokens: usize,
    pub num_prefill_tokens: usize,
    pub num_decode_reqs: usize,
    pub running: usize,
    pub waiting: usize,
    pub kv_usage: f64,
}

/// Where per-request and per-step lines go (each optional); files appear when committed.
#[derive(Default)]
pub struct Sinks {
    pub requests: Option<AtomicFile>,
    pub steps: Option<AtomicFile>,
    /// Per-request records kept in memory, in finishing order (for `validate`).
    pub records: Option<Vec<RequestRecord>>,
    /// Client-side figures with the real server's front end (`--frontend-latency`).
    pub client: Option<ClientSide>,
    /// The engine's state and throughput per tick, as a run's `timeseries.csv` holds them.
    pub ticks: Option<crate::timeseries::TickSeries>,
}

impl Sinks {
    /// Moves the finished files into place.
    pub fn commit(self) -> std::io::Result<()> {
        for f in [self.requests, self.steps].into_iter().flatten() {
            f.commit()?;
        }
        Ok(())
    }
}

/// What a run measured.
#[derive(Default)]
pub struct SimResult {
    pub completed: usize,
    /// Requests refused or aborted, workload lines skipped included.
    pub failed: usize,
    /// Of `failed`, the requests aborted (by the client's timeout: workload files carry no
    /// aborts).
    pub aborted: usize,
    /// Workload lines skipped as unusable (each also counted in `failed`).
    pub skipped_lines: usize,
    /// The first few failures, for the report.
    pub failure_samples: Vec<String>,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Virtual time of the last request's end: its last token, or its abort (the run's
    /// duration from time 0).
    pub end: Nanos,
    pub num_steps: u64,
    pub stats: LatencyStats,
}

struct Collector<'a> {
    result: SimResult,
    sinks: &'a mut Sinks,
    io_error: Option<std::io::Error>,
    /// The workload stopped being readable: the run ends with this error.
    unreadable: Option<LineError>,
}

impl Collector<'_> {
    fn write_request(&mut self, rec: &RequestRecord) {
        if let Some(v) = self.sinks.records.as_mut() {
            v.push(rec.clone());
        }
        if let Some(w) = self.sinks.requests.as_mut() {
            if let Err(e) = write_json_line(w, rec) {
                self.io_error.get_or_insert(e);
            }
        }
    }

    fn fail(&mut self, request_id: String, arrival: Nanos, prompt_len: usize, error: String) {
        self.result.failed += 1;
        if self.result.failure_samples.len() < 5 {
            self.result
                .failure_samples
                .push(format!("{request_id}: {error}"));
        }
        self.write_request(&RequestRecord {
            request_id,
            engine: None,
            arrival_s: arrival.as_secs_f64(),
            queued_s: None,
            first_scheduled_s: None,
            first_token_s: None,
            last_token_s: None,
            prompt_len,
            output_len: 0,
            cached_tokens: 0,
            num_preemptions: 0,
            finish_reason: None,
            error: Some(error),
        });
    }

    fn finish(&mut self, f: &FinishedRequestStats, engine: usize) {
        let t = f.times;
        let secs = |x: Option<Nanos>| x.map(Nanos::as_secs_f64);
        let aborted = f.finish_reason == FinishReason::Abort;
        if let (false, Some(ttft), Some(last)) = (aborted, f.time_to_first_token(), t.last_token) {
            self.result.completed += 1;
            self.result.total_input_tokens += f.num_prompt_tokens as u64;
            self.result.total_output_tokens += f.num_generation_tokens as u64;
            self.result.end = self.result.end.max(last);
            self.result.stats.record_request(
                ttft.as_millis_f64(),
                f.e2e_latency().as_millis_f64(),
                f.num_generation_tokens,
            );
        } else {
            self.result.failed += 1;
            if aborted {
                self.result.aborted += 1;
                // The client learns of it then: the run lasts until its last request ends,
                // answered or given up on, as a benchmark client's duration does.
                self.result.end = self.result.end.max(f.finished_at);
            }
        }
        self.write_request(&RequestRecord {
            request_id: f.request_id.clone(),
            engine: Some(engine),
            arrival_s: t.arrival.as_secs_f64(),
            queued_s: Some(t.queued.as_secs_f64()),
            first_scheduled_s: secs(t.first_scheduled),
            first_token_s: secs(t.first_token),
            last_token_s: secs(t.last_token),
            prompt_len: f.num_prompt_tokens,
            output_len: f.num_generation_tokens,
            cached_tokens: f.num_cached_tokens,
            num_preemptions: f.num_preemptions,
            finish_reason: Some(f.finish_reason.as_str()),
            error: None,
        });
    }
}

impl EngineSink for Collector<'_> {
    fn on_step(&mut self, s: &StepStats) {
        if s.num_scheduled_tokens == 0 {
            return;
        }
        self.result.num_steps += 1;
        let Some(w) = self.sinks.steps.as_mut() else {
            return;
        };
        let line = StepLine {
            engine: s.engine_index,
            time_s: s.scheduled_at.as_secs_f64(),
            start_s: s.device_start.as_secs_f64(),
            end_s: s.device_end.as_secs_f64(),
            duration_ms: (s.device_end - s.device_start).as_millis_f64(),
            num_reqs: s.num_reqs,
            num_tokens: s.num_scheduled_tokens,
            context_tokens: s.num_context_tokens,
            num_prefill_tokens: s.num_prefill_tokens,
            num_decode_reqs: s.num_decode_reqs,
            running: s.scheduler.num_running_reqs,
            waiting: s.scheduler.num_waiting_reqs,
            kv_usage: s.scheduler.kv_cache_usage,
        };
        if let Err(e) = write_json_line(w, &line) {
            self.io_error.get_or_insert(e);
        }
    }

    /// The client-side view needs every token's output; the rest is read from the stats.
    fn takes_decode_runs(&self) -> bool {
        self.sinks.client.is_none()
    }

    fn on_iteration(&mut self, it: &IterationStats, outputs: &[RequestOutput]) {
        if let Some(c) = self.sinks.client.as_mut() {
            c.on_iteration(it, outputs);
        }
        if let Some(t) = self.sinks.ticks.as_mut() {
            t.on_iteration(it);
        }
        // The requests of a step mostly share one gap: the iteration keeps them as runs.
        for &(gap, n) in it.inter_token_latencies_iter.runs() {
            self.result.stats.record_itl_run(gap.0, n);
        }
        // Aborted requests count as failed (workload files carry no aborts today).
        for f in &it.finished_requests {
            self.finish(f, it.engine_index);
        }
    }
}

/// Turns a workload item into the engine's request. Output lengths are pinned as in the real
/// runs and in `vllm bench serve` (`max_tokens` = `min_tokens` = output length, EOS ignored).
pub fn to_new_request(item: WorkloadItem) -> NewRequest {
    NewRequest {
        request_id: item.request_id,
        prompt_token_ids: item.prompt_token_ids,
        sampling: SamplingParams {
            max_tokens: item.output_len,
            min_tokens: item.output_len,
            ignore_eos: true,
            eos_token_id: None,
            stop_token_ids: Vec::new(),
        },
        priority: item.priority,
        cache_salt: item.cache_salt,
        tenant: item.tenant,
        arrival: item.arrival,
    }
}

/// Writes `value` as one line of JSON.
fn write_json_line(w: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, value).map_err(std::io::Error::other)?;
    w.write_all(b"\n")
}

/// The next usable workload item; bad lines on the way are recorded as failed requests named
/// after their line. An unreadable input ends the workload (kept in `col.unreadable`).
fn next_good_item(
    workload: &mut impl Iterator<Item = Result<WorkloadItem, LineError>>,
    col: &mut Collector<'_>,
) -> Option<WorkloadItem> {
    for next in workload.by_ref() {
        match next {
            Ok(item) => return Some(item),
            Err(e) if e.kind == LineErrorKind::Unreadable => {
                col.unreadable = Some(e);
                return None;
            }
            Err(e) => {
                col.result.skipped_lines += 1;
                col.fail(format!("line-{}", e.line), Nanos::ZERO, 0, e.to_string())
            }
        }
    }
    None
}

/// Hands `item` to the engine (tagged `tag`), recording a refusal as a failed request.
/// With a client timeout, the request's abort is queued at its deadline.
fn admit<E: EngineCore + ?Sized>(
    engine: &mut E,
    item: WorkloadItem,
    tag: u64,
    col: &mut Collector<'_>,
    (queue, timeout): (&mut EventQueue<WorkloadItem>, Option<ClientTimeout>),
) {
    let (id, arrival, plen) = (
        item.request_id.clone(),
        item.arrival,
        item.prompt_token_ids.len(),
    );
    match engine.add(to_new_request(item), tag) {
        Err(e) => col.fail(id, arrival, plen, e.to_string()),
        Ok(()) => {
            if let Some(c) = col.sinks.client.as_mut() {
                c.on_add(tag, arrival.as_secs_f64(), plen);
            }
            if let Some(t) = timeout {
                queue.push(t.deadline(arrival), Event::Abort(id));
            }
        }
    }
}

/// Drives `engine` through `workload` to the end. `progress` is called with the number of
/// requests done (completed + failed) every 1024 arrivals and at the end. A workload that
/// stops being readable ([`LineErrorKind::Unreadable`]) is an error once the requests already
/// read have run: the run did not see the whole workload.
pub fn run<E: EngineCore + ?Sized>(
    engine: &mut E,
    workload: impl Iterator<Item = Result<WorkloadItem, LineError>>,
    sinks: &mut Sinks,
    progress: &mut dyn FnMut(usize),
) -> std::io::Result<SimResult> {
    run_limited(engine, workload, sinks, progress, None)
}

/// [`run`] with a client that keeps at most `max_concurrency` requests in flight, as
/// `vllm bench serve --max-concurrency` does: a request that arrives while every slot is taken
/// waits, first come first served, until one finishes, and is sent then; its arrival (and so
/// its TTFT and E2E) counts from that send time, as the bench client measures from its send.
pub fn run_limited<E: EngineCore + ?Sized>(
    engine: &mut E,
    workload: impl Iterator<Item = Result<WorkloadItem, LineError>>,
    sinks: &mut Sinks,
    progress: &mut dyn FnMut(usize),
    max_concurrency: Option<usize>,
) -> std::io::Result<SimResult> {
    let client = Client {
        max_concurrency,
        timeout: None,
    };
    run_client(engine, workload, sinks, progress, client)
}

/// How the client that sends the workload behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client {
    /// At most this many requests in flight ([`run_limited`]).
    pub max_concurrency: Option<usize>,
    /// A total limit per request: at its deadline a request not yet finished is aborted (the
    /// client gives up and closes the connection; the server aborts it), and counts as failed.
    pub timeout: Option<ClientTimeout>,
}

/// [`run`] with the client `client` describes.
pub fn run_client<E: EngineCore + ?Sized>(
    engine: &mut E,
    workload: impl Iterator<Item = Result<WorkloadItem, LineError>>,
    sinks: &mut Sinks,
    progress: &mut dyn FnMut(usize),
    client: Client,
) -> std::io::Result<SimResult> {
    let max_concurrency = client.max_concurrency;
    let mut col = Collector {
        result: SimResult::default(),
        sinks,
        io_error: None,
        unreadable: None,
    };
    let mut workload = workload;
    let mut queue = EventQueue::default();
    // The next arrival's time (the one arrival in the queue): nothing reaches the engine
    // before it, so the engine may go on by itself until then (`EngineCore::run_until`).
    let mut next_arrival = None;
    if let Some(item) = next_good_item(&mut workload, &mut col) {
        next_arrival = Some(item.arrival);
        queue.push(item.arrival, Event::Arrival(item));
    }
    let mut now = Nanos::ZERO;
    // The generation of the engine's current wake-up: older ones are superseded.
    let mut generation = 0u64;
    let mut arrivals = 0usize;
    // Requests waiting for a client slot (with `max_concurrency`), with their tags.
    let mut held: std::collections::VecDeque<(WorkloadItem, u64)> = Default::default();
    loop {
        let t = loop {
            match queue.peek() {
                Some((_, Event::Wake { generation: g })) if *g != generation => {
                    queue.pop();
                }
                Some((t, _)) => break Some(t),
                None => break None,
            }
        };
        let Some(t) = t else { break };
        now = now.max(t);
        while let Some((_, event)) = queue.pop_due(now) {
            match event {
                Event::Arrival(item) => {
                    arrivals += 1;
                    if arrivals.is_multiple_of(1024) {
                        progress(col.result.completed + col.result.failed);
                    }
                    let full = max_concurrency
                        .is_some_and(|m| !held.is_empty() || engine.num_unfinished() >= m);
                    if full {
                        held.push_back((item, arrivals as u64));
                    } else {
                        admit(
                            engine,
                            item,
                            arrivals as u64,
                            &mut col,
                            (&mut queue, client.timeout),
                        );
                    }
                    next_arrival = None;
                    if let Some(next) = next_good_item(&mut workload, &mut col) {
                        next_arrival = Some(next.arrival);
                        queue.push(next.arrival, Event::Arrival(next));
                    }
                }
                Event::Abort(id) => engine.abort(&id),
                Event::Wake { .. } => {}
            }
        }
        generation += 1;
        // Aborts (client timeouts) and held requests (sent when a request finishes) can reach
        // the engine at other instants: then it runs at each one.
        let horizon = if held.is_empty() && client.timeout.is_none() {
            next_arrival.unwrap_or(Nanos::MAX)
        } else {
            now
        };
        if let Wake::At(w) = engine.run_until(now, horizon, &mut col) {
            queue.push(w, Event::Wake { generation });
        }
        // Slots freed by this run go to the longest-waiting requests, sent now; the engine
        // runs again at this instant to take them in.
        let mut sent = false;
        while max_concurrency.is_some_and(|m| engine.num_unfinished() < m) {
            let Some((mut item, tag)) = held.pop_front() else {
                break;
            };
            item.arrival = now;
            admit(engine, item, tag, &mut col, (&mut queue, client.timeout));
            sent = true;
        }
        if sent {
            generation += 1;
            queue.push(now, Event::Wake { generation });
        }
    }
    progress(col.result.completed + col.result.failed);
    for s in [col.sinks.requests.as_mut(), col.sinks.steps.as_mut()]
        .into_iter()
        .flatten()
    {
        s.flush()?;
    }
    if let Some(e) = col.io_error.take() {
        return Err(e);
    }
    match col.unreadable.take() {
        Some(e) => Err(std::io::Error::other(e)),
        None => Ok(col.result),
    }
}
