//! The benchmark run (`benchmark()` of `vllm bench serve`): optional ready check and warm-up,
//! then every request sent at its offset from the start, at most `--max-concurrency` in
//! flight, the run's duration measured from the first send to the last response.

use crate::client::{self, Clock, HttpClient, RequestInput, RequestOutput, Target};
use crate::dataset::SampleRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Where the run reports progress (a progress bar, log lines).
pub trait Progress: Send + Sync {
    /// A line of text, as vLLM prints it.
    fn line(&self, text: &str);
    /// One request of the main run finished.
    fn request_done(&self);
}

/// Settings of a run beyond the target.
pub struct RunPlan {
    /// Send offsets in seconds, one per request (see [`crate::arrival`]).
    pub offsets: Vec<f64>,
    pub max_concurrency: Option<usize>,
    /// Retry the first request until it succeeds, up to this long (0: skip, vLLM's default).
    pub ready_check_timeout: Duration,
    pub num_warmups: usize,
    /// Lines printed as the main run starts (vLLM's traffic settings).
    pub traffic_lines: Vec<String>,
}

pub struct RunOutput {
    pub outputs: Vec<RequestOutput>,
    /// Seconds from the first send to the last response.
    pub duration: f64,
    /// When the send schedule started, on the clock of the outputs' `start_time`: request `i`
    /// is sent no earlier than `started_at + offsets[i]`.
    pub started_at: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("Initial test run failed - Please make sure benchmark arguments are correctly specified. Error: {0}")]
    NotReady(String),
    #[error("{0} send offsets for {1} requests")]
    Plan(usize, usize),
    #[error("a request task died: {0}")]
    Task(String),
}

fn input(r: &SampleRequest) -> RequestInput<'_> {
    RequestInput {
        prompt: &r.prompt,
        prompt_len: r.prompt_len,
        output_len: r.expected_output_len,
        request_id: Some(&r.request_id),
        user: r.user.as_deref(),
    }
}

fn test_input(r: &SampleRequest) -> RequestInput<'_> {
    RequestInput {
        request_id: None,
        ..input(r)
    }
}

/// Runs the benchmark on the current tokio runtime.
pub async fn run(
    target: Arc<Target>,
    requests: Arc<Vec<SampleRequest>>,
    plan: RunPlan,
    progress: Arc<dyn Progress>,
) -> Result<RunOutput, RunError> {
    if plan.offsets.len() != requests.len() {
        return Err(RunError::Plan(plan.offsets.len(), requests.len()));
    }
    let http: HttpClient = client::http_client();
    let clock = Clock::new();
    progress.line("Starting initial single prompt test run...");
    if plan.ready_check_timeout > Duration::ZERO {
        let deadline = Instant::now() + plan.ready_check_timeout;
        progress.line(&format!(
            "Waiting for endpoint to become up in {} seconds",
            plan.ready_check_timeout.as_secs()
        ));
        loop {
            let out = client::send(&http, &target, &test_input(&requests[0]), &clock).await;
            if out.success {
                progress.line("Initial test run completed.");
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RunError::NotReady(out.error));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_secs(5))).await;
        }
    } else {
        progress.line("Skipping endpoint ready check.");
    }
    let semaphore = plan
        .max_concurrency
        .map(|n| Arc::new(Semaphore::new(n.max(1))));
    if plan.num_warmups > 0 {
        progress.line(&format!("Warming up with {} requests...", plan.num_warmups));
        let mut tasks = Vec::new();
        for _ in 0..plan.num_warmups {
            let (http, target, requests, sem) = (
                http.clone(),
                target.clone(),
                requests.clone(),
                semaphore.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = match &sem {
                    Some(s) => Some(s.acquire().await.expect("semaphore open")),
                    None => None,
                };
                client::send(&http, &target, &test_input(&requests[0]), &clock).await
            }));
        }
        for t in tasks {
            t.await.map_err(|e| RunError::Task(e.to_string()))?;
        }
        progress.line("Warmup run completed.");
    }
    progress.line("Starting main benchmark run...");
    for l in &plan.traffic_lines {
        progress.line(l);
    }

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (i, &offset) in plan.offsets.iter().enumerate() {
        if offset > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(offset)).into()).await;
        }
        let (http, target, requests, sem, progress) = (
            http.clone(),
            target.clone(),
            requests.clone(),
            semaphore.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = match &sem {
                Some(s) => Some(s.acquire().await.expect("semaphore open")),
                None => None,
            };
            let out = client::send(&http, &target, &input(&requests[i]), &clock).await;
            progress.request_done();
            out
        }));
    }
    let mut outputs = Vec::with_capacity(tasks.len());
    for t in tasks {
        outputs.push(t.await.map_err(|e| RunError::Task(e.to_string()))?);
    }
    let duration = start.elapsed().as_secs_f64();
    Ok(RunOutput {
        outputs,
        duration,
        started_at: clock.secs(start),
    })
}
