//! `serve --frontend-latency`: hands a request's engine events to its response as late as a
//! real vLLM API server would ([`FrontendLatency`]), so that clients see the real server's
//! TTFT and token arrival while the engine's timing stays exact.
//!
//! Every event of a request is stamped when it leaves the engine and handed over at
//! `stamp + way in + token_out(requests in flight)`: a constant shift per request (the way in,
//! `request_in(prompt tokens)` after the ways in of the requests that arrived before it at this
//! endpoint, [`llm_emu_perf::ApiServerQueue`], delays everything after it) plus the way out,
//! never earlier than the event before it. Events that arrive while an earlier one waits are stamped on arrival, so
//! the delay does not accumulate over a stream: inter-token gaps keep the engine's spacing.
//! Waiting is a timer (`tokio::time::sleep_until`), never a busy loop. The number of requests
//! in a step is not known here; the generation requests in flight (`server_load`) stand for it.
//!
//! The pacer is polled ([`Pacer::poll_recv`]) from a response body's own `poll_frame`, so a
//! streamed token costs no future built and moved per chunk.

use crate::state::AppState;
use llm_emu_perf::FrontendLatency;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep_until, Duration, Instant, Sleep};

/// Paces one request's events; without a front-end model it passes them straight through.
pub struct Pacer<T> {
    fe: Option<FrontendLatency>,
    state: Arc<AppState>,
    in_s: f64,
    queued: VecDeque<(Instant, T)>,
    last_due: Option<Instant>,
    closed: bool,
    /// The timer of the first queued event, made at its first wait and reset after.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> Pacer<T> {
    /// For a request of `prompt_tokens` prompt tokens (all prompts of the request together).
    pub fn new(state: &Arc<AppState>, prompt_tokens: usize) -> Pacer<T> {
        let fe = state.frontend;
        Pacer {
            in_s: fe.map_or(0.0, |f| state.way_in_now_s(&f, prompt_tokens)),
            fe,
            state: state.clone(),
            queued: VecDeque::new(),
            last_due: None,
            closed: false,
            timer: None,
        }
    }

    fn stamp(&mut self, fe: &FrontendLatency, ev: T) {
        let load = self.state.server_load.load(Ordering::Relaxed);
        let delay = Duration::from_secs_f64(self.in_s + fe.token_out_s(load));
        let mut due = Instant::now() + delay;
        if let Some(prev) = self.last_due {
            due = due.max(prev);
        }
        self.last_due = Some(due);
        self.queued.push_back((due, ev));
    }

    fn drain(&mut self, fe: &FrontendLatency, rx: &mut UnboundedReceiver<T>) {
        while let Ok(ev) = rx.try_recv() {
            self.stamp(fe, ev);
        }
    }

    /// The next event once it is due; `None` when the channel is closed and nothing waits.
    pub async fn recv(&mut self, rx: &mut UnboundedReceiver<T>) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(rx, cx)).await
    }

    /// [`Pacer::recv`] as a poll: `Pending` registers `cx` with the channel and, while an
    /// event waits to be due, with its timer.
    pub fn poll_recv(
        &mut self,
        rx: &mut UnboundedReceiver<T>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<T>> {
        let Some(fe) = self.fe else {
            return rx.poll_recv(cx);
        };
        loop {
            if !self.closed {
                self.drain(&fe, rx);
            }
            match self.queued.front() {
                Some(&(due, _)) if due <= Instant::now() => {
                    return Poll::Ready(self.queued.pop_front().map(|(_, ev)| ev))
                }
                Some(&(due, _)) => {
                    if !self.closed {
                        match rx.poll_recv(cx) {
                            Poll::Ready(Some(ev)) => {
                                self.stamp(&fe, ev);
                                continue;
                            }
                            Poll::Ready(None) => {
                                self.closed = true;
                                continue;
                            }
                            Poll::Pending => {}
                        }
                    }
                    let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(due)));
                    if timer.deadline() != due {
                        timer.as_mut().reset(due);
                    }
                    ready!(timer.as_mut().poll(cx));
                }
                None if self.closed => return Poll::Ready(None),
                None => match ready!(rx.poll_recv(cx)) {
                    Some(ev) => self.stamp(&fe, ev),
                    None => self.closed = true,
                },
            }
        }
    }

    /// An event that is already due, without waiting.
    pub fn try_recv(&mut self, rx: &mut UnboundedReceiver<T>) -> Option<T> {
        let Some(fe) = self.fe else {
            return rx.try_recv().ok();
        };
        if !self.closed {
            self.drain(&fe, rx);
        }
        match self.queued.front() {
            Some(&(due, _)) if due <= Instant::now() => self.queued.pop_front().map(|(_, ev)| ev),
            _ => None,
        }
    }
}
