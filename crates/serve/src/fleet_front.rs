//! The front of a served fleet: where each request goes among the engines one engine thread
//! drives, as vLLM's API server places it on a data-parallel rank (its `DPLBAsyncMPClient`,
//! or the rank a router names in the `X-data-parallel-rank` header) or as a router sends it to
//! one of several replicas, and which engine an instance's own port serves.
//!
//! A request's placement is decided per HTTP request: [`place`] (a middleware) reads the
//! header (and, for the `session` router, the session) and scopes the [`Placement`] over the
//! handler; [`crate::engine_loop::EngineHandle::add`] takes it from there and sends it with the
//! engine requests, and the engine thread applies it ([`ServedCore::add_placed`]). The
//! request-parameter observations the handler makes before it submits travel the same way, so
//! that they are counted on the engine the request went to.

use crate::errors::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llm_emu_core::engine::RequestError;
use llm_emu_core::{Engine, EngineCore, NewRequest};
use llm_emu_fleet::{AddError, DataParallel, Disaggregated, Replicas};
use std::cell::RefCell;
use std::sync::Arc;

/// vLLM's header naming the data-parallel rank (`serving.py::_get_data_parallel_rank`).
pub const DP_RANK_HEADER: &str = "x-data-parallel-rank";
/// The header naming a request's session for the `session` router (else the body's `user`).
pub const SESSION_HEADER: &str = "x-session-id";

/// What kind of fleet the engine thread drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetKind {
    /// One engine.
    Single,
    /// vLLM data parallelism: `X-data-parallel-rank` is honoured.
    DataParallel,
    /// Replicas behind a router; the session is read when the router uses it.
    Replicas { router: String },
    /// Prefill and decode instances: `router` picks the decode instance (the session is read
    /// when it uses it), prefill instances are taken in turn.
    PrefillDecode { router: String },
}

impl FleetKind {
    /// The router that reads a request's session, if any.
    fn session_router(&self) -> bool {
        matches!(self, FleetKind::Replicas { router } | FleetKind::PrefillDecode { router } if router == "session")
    }
}

/// What a front knows of the fleet behind it.
#[derive(Clone, Debug)]
pub struct FrontPlan {
    pub kind: FleetKind,
    /// Engines driven by the engine thread.
    pub engines: usize,
    /// The engine this front serves alone (an instance's own port).
    pub pinned: Option<usize>,
}

impl FrontPlan {
    pub fn single() -> FrontPlan {
        FrontPlan {
            kind: FleetKind::Single,
            engines: 1,
            pinned: None,
        }
    }

    /// Ranks a request may name in the header here: all of a DP fleet's on its shared
    /// endpoint, one (the local engine, rank 0) on an instance's port or a single engine, as
    /// vLLM counts `data_parallel_size_local` when it serves its local engines alone.
    fn header_ranks(&self) -> usize {
        match (&self.kind, self.pinned) {
            (FleetKind::DataParallel, None) => self.engines,
            _ => 1,
        }
    }
}

/// One observation of request parameters, counted on the engine the request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamObservation {
    pub n: u32,
    pub max_tokens_param: Option<u32>,
    pub max_tokens: u32,
}

/// Where one HTTP request's engine requests go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The engine it must go to: a rank named in the header, or the engine of an instance's
    /// port. `None`: the balancer or router decides.
    pub engine: Option<usize>,
    /// The session for the `session` router.
    pub session: Option<String>,
    /// Request parameters observed before submission.
    pub params: Vec<ParamObservation>,
    /// The LoRA adapter's `lora_int_id` for a request naming one (the scheduler's `max_loras`
    /// rule, applied on whichever engine the request runs: every fleet member, both halves of
    /// a prefill/decode request).
    pub lora: Option<u64>,
}

tokio::task_local! {
    static PLACEMENT: RefCell<Placement>;
}

/// Records request parameters on the current request's placement; `false` when the caller runs
/// outside a placed request (then it records them itself).
pub fn defer_params(obs: ParamObservation) -> bool {
    PLACEMENT
        .try_with(|p| p.borrow_mut().params.push(obs))
        .is_ok()
}

/// Records the current request's LoRA adapter on its placement (nothing outside a placed
/// request).
pub fn set_lora(id: u64) {
    let _ = PLACEMENT.try_with(|p| p.borrow_mut().lora = Some(id));
}

/// Takes the current request's placement (empty outside a placed request).
pub fn take_placement() -> Placement {
    PLACEMENT
        .try_with(|p| std::mem::take(&mut *p.borrow_mut()))
        .unwrap_or_default()
}

/// The `user` field of a JSON body, if it has one.
fn body_user(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct User {
        user: Option<String>,
    }
    serde_json::from_slice::<User>(body).ok()?.user
}

/// The middleware: decides the request's [`Placement`] and runs the handler inside it. A rank
/// outside the fleet gets vLLM's 400 (`input_processor.py`); one that does not parse as an
/// integer is ignored, as vLLM ignores it.
pub async fn place(State(plan): State<Arc<FrontPlan>>, req: Request, next: Next) -> Response {
    // Every POST route may submit to the engine; the others never do.
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let mut placement = Placement {
        engine: plan.pinned,
        ..Default::default()
    };
    let header_rank = req
        .headers()
        .get(DP_RANK_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    if let Some(rank) = header_rank {
        let ranks = plan.header_ranks();
        if rank < 0 || rank as usize >= ranks {
            return ApiError::Validation(format!(
                "data_parallel_rank {rank} is out of range [0, {ranks})."
            ))
            .into_response();
        }
        if plan.kind == FleetKind::DataParallel && plan.pinned.is_none() {
            placement.engine = Some(rank as usize);
        }
    }
    let req = match &plan.kind {
        kind if kind.session_router() && plan.pinned.is_none() => {
            let header = req
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if header.is_some() {
                placement.session = header;
                req
            } else {
                // The body is already read (bounded) by the edge: this does not wait.
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                placement.session = body_user(&bytes);
                Request::from_parts(parts, Body::from(bytes))
            }
        }
        _ => req,
    };
    PLACEMENT
        .scope(RefCell::new(placement), next.run(req))
        .await
}

/// An [`EngineCore`] the engine thread can place requests on: one engine, data-parallel
/// ranks, or replicas behind a router.
pub trait ServedCore: EngineCore {
    /// Engines it drives (their engine indexes are 0..n).
    fn num_engines(&self) -> usize {
        1
    }

    /// Queues `req` where `to` says (an engine named, else the balancer's or router's
    /// choice); returns the engine index it went to.
    fn add_placed(
        &mut self,
        req: NewRequest,
        tag: u64,
        to: &Placement,
    ) -> Result<usize, RequestError>;

    /// Each engine, with its index: for setting each engine up before the fleet runs (KV cache
    /// events, the structured-output sampler layer) and draining its KV events.
    fn each_engine(&mut self, f: &mut dyn FnMut(usize, &mut Engine));
}

impl ServedCore for Engine {
    fn each_engine(&mut self, f: &mut dyn FnMut(usize, &mut Engine)) {
        f(0, self);
    }
    fn add_placed(
        &mut self,
        req: NewRequest,
        tag: u64,
        to: &Placement,
    ) -> Result<usize, RequestError> {
        self.add_tagged_lora(req, tag, to.lora).map(|_| 0)
    }
}

impl ServedCore for DataParallel {
    fn each_engine(&mut self, f: &mut dyn FnMut(usize, &mut Engine)) {
        for (i, engine) in self.engines_mut().enumerate() {
            f(i, engine);
        }
    }
    fn num_engines(&self) -> usize {
        self.size()
    }

    fn add_placed(
        &mut self,
        req: NewRequest,
        tag: u64,
        to: &Placement,
    ) -> Result<usize, RequestError> {
        // The front has checked the rank against the fleet's size.
        let rank = to.engine.filter(|&r| r < self.size());
        self.add_to_rank_lora(req, tag, rank, to.lora)
            .map_err(|e| match e {
                AddError::Request(e) => e,
                AddError::RankOutOfRange { .. } => unreachable!("rank filtered above"),
            })
    }
}

/// Replicas and a P/D fleet are served alike: a request on an instance's own port runs whole on
/// that instance; one on the fleet's port goes through the fleet, whose router picks by the
/// request's session (P/D: prefill, transfer, decode; the engine returned is the decode
/// instance). One rule, so one body for both types.
macro_rules! served_by_instance_or_router {
    ($($fleet:ty),+) => {$(
        impl ServedCore for $fleet {
            fn each_engine(&mut self, f: &mut dyn FnMut(usize, &mut Engine)) {
                for (i, engine) in self.engines_mut().enumerate() {
                    f(i, engine);
                }
            }
            fn num_engines(&self) -> usize {
                self.engines().count()
            }

            fn add_placed(
                &mut self,
                req: NewRequest,
                tag: u64,
                to: &Placement,
            ) -> Result<usize, RequestError> {
                match to.engine.filter(|&i| i < self.num_engines()) {
                    Some(i) => self.add_to_instance_lora(req, tag, i, to.lora),
                    None => self.add_in_session_lora(req, tag, to.session.as_deref(), to.lora),
                }
            }
        }
    )+};
}

served_by_instance_or_router!(Replicas, Disaggregated);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_field_is_read_from_a_json_body() {
        assert_eq!(
            body_user(br#"{"model":"m","user":"alice","prompt":"x"}"#).as_deref(),
            Some("alice")
        );
        assert_eq!(body_user(br#"{"model":"m"}"#), None);
        assert_eq!(body_user(b"not json"), None);
    }

    #[test]
    fn header_ranks_follow_the_front() {
        let dp = FrontPlan {
            kind: FleetKind::DataParallel,
            engines: 4,
            pinned: None,
        };
        assert_eq!(dp.header_ranks(), 4);
        let port = FrontPlan {
            pinned: Some(2),
            ..dp
        };
        assert_eq!(port.header_ranks(), 1);
        assert_eq!(FrontPlan::single().header_ranks(), 1);
    }
}
