//! Fair share per tenant (`fair`, not vLLM): round-robin admission over tenants.
//!
//! A request's tenant is its `tenant` (the OpenAI `user` field online, a `tenant` or `user` key
//! in workload records); requests without one share the anonymous tenant. Each tenant has a
//! FCFS queue (arrivals at the back, its preempted requests at the front). Admission is plain
//! round-robin by request, not deficit round-robin by tokens: tenants with waiting requests take
//! turns, one admitted request per turn, in the order they first had a request waiting; a tenant
//! whose queue empties leaves the rotation and rejoins at the back. So with `k` tenants waiting,
//! each gets one in `k` admissions whatever its arrival rate.
//!
//! The victim is the newest running request of the tenant holding the most running requests
//! (ties: the tenant whose newest running request is the latest admitted).

use super::Policy;
use crate::request::Request;
use crate::sched::store::{ReqKey, RequestStore};
use crate::time::Nanos;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct FairShare {
    /// Tenant name → index into `queues`.
    index: FxHashMap<Option<Arc<str>>, usize>,
    /// Each tenant's waiting requests and the keys' tenant index.
    queues: Vec<VecDeque<ReqKey>>,
    /// Tenants with waiting requests, the next to admit first.
    turn: VecDeque<usize>,
    len: usize,
}

impl FairShare {
    fn tenant(&mut self, req: &Request) -> usize {
        if let Some(&t) = self.index.get(&req.tenant) {
            return t;
        }
        let t = self.queues.len();
        self.queues.push(VecDeque::new());
        self.index.insert(req.tenant.clone(), t);
        t
    }
}

impl Policy for FairShare {
    fn name(&self) -> &'static str {
        "fair"
    }

    fn add(&mut self, key: ReqKey, req: &Request) {
        let t = self.tenant(req);
        if self.queues[t].is_empty() {
            self.turn.push_back(t);
        }
        self.queues[t].push_back(key);
        self.len += 1;
    }

    fn prepend(&mut self, key: ReqKey, req: &Request) {
        let t = self.tenant(req);
        if self.queues[t].is_empty() {
            self.turn.push_back(t);
        }
        self.queues[t].push_front(key);
        self.len += 1;
    }

    fn peek(&self, _now: Nanos) -> Option<ReqKey> {
        let &t = self.turn.front()?;
        self.queues[t].front().copied()
    }

    fn pop(&mut self, _now: Nanos) -> Option<ReqKey> {
        let t = self.turn.pop_front()?;
        let key = self.queues[t].pop_front();
        if !self.queues[t].is_empty() {
            self.turn.push_back(t);
        }
        if key.is_some() {
            self.len -= 1;
        }
        key
    }

    fn remove(&mut self, keys: &[ReqKey]) {
        for q in &mut self.queues {
            let before = q.len();
            q.retain(|k| !keys.contains(k));
            self.len -= before - q.len();
        }
        let queues = &self.queues;
        self.turn.retain(|&t| !queues[t].is_empty());
    }

    fn len(&self) -> usize {
        self.len
    }

    fn select_victim(&self, running: &[ReqKey], requests: &RequestStore) -> usize {
        let mut counts: FxHashMap<&Option<Arc<str>>, usize> = FxHashMap::default();
        for k in running {
            *counts.entry(&requests.req(*k).tenant).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        running
            .iter()
            .rposition(|k| counts.get(&requests.req(*k).tenant) == Some(&most))
            .unwrap_or(running.len() - 1)
    }
}
