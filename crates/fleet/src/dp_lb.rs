//! vLLM 0.19's data-parallel load balancer, with the staleness of its counts.
//!
//! Each API server's client (`DPLBAsyncMPClient`, `core_client.py::get_core_engine_for_request`)
//! keeps its own copy of the coordinator's last publication (`lb_engines`), scores rank `i` as
//! `4·waiting + running`, takes the lowest score scanning from rank
//! `(ranks · client_index) // client_count` (the first lowest wins), and adds `client_count` to
//! the chosen rank's waiting count until the next publication replaces the copy
//! (`run_engine_stats_update_task`: `self.lb_engines = sliced_counts`).
//!
//! What the coordinator publishes depends on the model (`core.py::run_engine_core`, lines
//! 1071–1081):
//!
//! - **A mixture-of-experts model** runs its ranks as `DPEngineCoreProc`, whose busy loop
//!   (`run_busy_loop`, line 1713) sends the rank's `(waiting, running)` to the coordinator after
//!   each iteration in which they changed (`_maybe_publish_request_counts`, lines 1683–1694).
//!   The coordinator (`coordinator.py::process_input_socket`) then publishes all ranks' counts
//!   about every 100 ms while counts change (`min_stats_update_interval_ms`), at least 50 ms
//!   after a change that follows a quiet spell, and every 5 s otherwise.
//! - **A dense model** runs each rank as a plain `EngineCoreProc` ("Non-MoE DP ranks are
//!   completely independent"), whose busy loop (lines 1136–1143) never calls
//!   `_maybe_publish_request_counts`: the coordinator never receives a count, `stats_changed`
//!   stays false, and it republishes its initial zeros every 5 s (`wait_for = 5000`). Each API
//!   server therefore places requests from its local increments alone, reset to zeros every
//!   5 s. (Checked against vLLM 0.19 itself: docs/fleet.md.)
//!
//! The coordinator publishes once at start-up (`last_publish_time = 0`, so its first poll
//! times out after 50 ms) and every 5 s after while nothing changes; the emulation puts that
//! start-up publication at the run's time 0 (the real phase depends on when the coordinator
//! started, which a replay does not know).
//!
//! What is approximated: a publication carries the counts reported before its instant (vLLM
//! may publish the counts of the step before the latest one); after a quiet spell vLLM may
//! publish before the 50 ms are up when a later step's counts arrive first; API servers take
//! requests in turn (the kernel spreads connections among them).

use llm_emu_core::Nanos;

/// The coordinator's publication interval while counts change (`min_stats_update_interval_ms`).
pub const LB_PUBLISH_INTERVAL: Nanos = Nanos::from_millis(100);
/// After a quiet spell, the coordinator waits at least this long after a change.
const LB_MIN_WAIT: Nanos = Nanos::from_millis(50);
/// Publication interval when no count changed.
const LB_IDLE_INTERVAL: Nanos = Nanos::from_millis(5000);

/// `[waiting, running]` of one rank.
pub type Counts = [u64; 2];

/// The coordinator and the API servers' balancing clients of one DP deployment.
#[derive(Clone, Debug)]
pub struct LoadBalancer {
    /// Whether the ranks send their counts to the coordinator (a MoE model's
    /// `DPEngineCoreProc`); a dense model's ranks never do.
    counts_reported: bool,
    /// The counts each rank last reported to the coordinator.
    reported: Vec<Counts>,
    /// When a report first changed the counts since the last publication.
    changed_since: Option<Nanos>,
    last_publish: Option<Nanos>,
    /// Each API server's copy of the counts (`lb_engines`), with its local increments.
    clients: Vec<Vec<Counts>>,
    /// The API server that takes the next request.
    next_client: usize,
}

impl LoadBalancer {
    /// A balancer for `ranks` engines behind `api_servers` API servers (vLLM 0.19 defaults
    /// `--api-server-count` to the DP size), both at least 1, whose ranks report their counts
    /// (a mixture-of-experts model's); see [`LoadBalancer::without_count_reports`].
    pub fn new(ranks: usize, api_servers: usize) -> LoadBalancer {
        let ranks = ranks.max(1);
        LoadBalancer {
            counts_reported: true,
            reported: vec![[0, 0]; ranks],
            changed_since: None,
            // The coordinator's start-up publication (of zeros), at the run's time 0.
            last_publish: Some(Nanos::ZERO),
            clients: vec![vec![[0, 0]; ranks]; api_servers.max(1)],
            next_client: 0,
        }
    }

    /// The same balancer with ranks that never report their counts (a dense model's
    /// independent `EngineCoreProc`s): [`LoadBalancer::report`] does nothing, and the
    /// coordinator's 5 s republications of zeros reset the clients' copies.
    pub fn without_count_reports(mut self) -> LoadBalancer {
        self.counts_reported = false;
        self
    }

    /// Whether the ranks' counts reach the coordinator.
    pub fn counts_reported(&self) -> bool {
        self.counts_reported
    }

    /// The next publication after the last one, if any is due at all.
    fn next_publication(&self) -> Option<Nanos> {
        match (self.changed_since, self.last_publish) {
            (Some(c), Some(l)) => Some((l + LB_PUBLISH_INTERVAL).max(c + LB_MIN_WAIT)),
            (Some(c), None) => Some(c + LB_MIN_WAIT),
            (None, Some(l)) => Some(l + LB_IDLE_INTERVAL),
            (None, None) => None,
        }
    }

    /// Makes every publication due at or before `now`: each replaces the clients' copies with
    /// the reported counts (dropping their local increments).
    pub fn advance(&mut self, now: Nanos) {
        while let Some(p) = self.next_publication().filter(|&p| p <= now) {
            let p = if self.changed_since.is_none() {
                // Unchanged republications: only the latest one before `now` matters.
                let since = now - p;
                p + Nanos(since.0 - since.0 % LB_IDLE_INTERVAL.0)
            } else {
                p
            };
            for c in &mut self.clients {
                c.clone_from(&self.reported);
            }
            self.last_publish = Some(p);
            self.changed_since = None;
        }
    }

    /// Rank `rank` reports its counts at `at` (sent only when they changed, as the engine
    /// core does). Publications due at or before `at` go out first. Nothing when the ranks do
    /// not report ([`LoadBalancer::without_count_reports`]).
    pub fn report(&mut self, rank: usize, waiting: usize, running: usize, at: Nanos) {
        if !self.counts_reported {
            return;
        }
        self.advance(at);
        let counts = [waiting as u64, running as u64];
        if let Some(r) = self.reported.get_mut(rank) {
            if *r != counts {
                *r = counts;
                self.changed_since.get_or_insert(at);
            }
        }
    }

    /// The rank the next API server would choose (`get_core_engine_for_request` without an
    /// explicit rank), without placing anything.
    pub fn peek(&self) -> usize {
        let client = &self.clients[self.next_client];
        let n = client.len();
        let start = (n * self.next_client) / self.clients.len();
        let mut best = (u64::MAX, 0);
        for i in 0..n {
            let idx = (start + i) % n;
            let [waiting, running] = client[idx];
            let score = waiting * 4 + running;
            if score < best.0 {
                best = (score, idx);
            }
        }
        best.1
    }

    /// Records that the next API server placed a request on `rank` (its local increment) and
    /// passes the turn on.
    pub fn commit(&mut self, rank: usize) {
        let count = self.clients.len() as u64;
        if let Some(c) = self.clients[self.next_client].get_mut(rank) {
            c[0] += count;
        }
        self.pass_turn();
    }

    /// Passes the turn to the next API server without a local increment (a request that named
    /// its rank).
    pub fn pass_turn(&mut self) {
        self.next_client = (self.next_client + 1) % self.clients.len();
    }

    /// How many API servers place requests.
    pub fn api_servers(&self) -> usize {
        self.clients.len()
    }

    /// An API server's current copy of the counts (for tests and reports).
    pub fn client_counts(&self, client: usize) -> Option<&[Counts]> {
        self.clients.get(client).map(Vec::as_slice)
    }
}
