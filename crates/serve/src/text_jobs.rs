//! CPU-heavy text work off the async runtime: tokenizing prompts, rendering chat templates and
//! detokenizing whole token lists run on tokio's blocking threads, at most
//! [`TextJobs::max_parallel`] at a time (as TGI's validation workers do), so that a request
//! with a 20 MB prompt cannot stall `/health` or the streams of other requests, which the
//! runtime's few worker threads serve. Requests beyond that wait (asynchronously) for a slot.

use crate::errors::ApiError;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The slots for text work.
pub struct TextJobs {
    slots: Arc<Semaphore>,
    max_parallel: usize,
}

impl TextJobs {
    /// At most `max_parallel` jobs at once (at least one).
    pub fn new(max_parallel: usize) -> TextJobs {
        let max_parallel = max_parallel.max(1);
        TextJobs {
            slots: Arc::new(Semaphore::new(max_parallel)),
            max_parallel,
        }
    }

    /// One slot per core the process may use.
    pub fn per_core() -> TextJobs {
        TextJobs::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn max_parallel(&self) -> usize {
        self.max_parallel
    }

    /// Runs `job` on a blocking thread once a slot is free. A job that panics is a 500.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal("text workers are shut down".into()))?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(slot);
            out
        })
        .await
        .map_err(|e| ApiError::Internal(format!("text worker failed: {e}")))
    }
}
