//! Live requests, addressed by generational keys.
//!
//! vLLM addresses requests by string id and a finished request's id simply stops resolving. A
//! slot index alone could be reused by a new request while a step that scheduled the old one is
//! still in flight; the generation makes such stale keys resolve to nothing, as in vLLM.

use crate::request::Request;

/// A handle to a live request.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReqKey {
    index: u32,
    generation: u32,
}

#[derive(Debug, Default)]
pub struct RequestStore {
    slots: Vec<(u32, Option<Request>)>,
    free: Vec<u32>,
    len: usize,
}

impl RequestStore {
    pub fn insert(&mut self, req: Request) -> ReqKey {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.0 = slot.0.wrapping_add(1);
            slot.1 = Some(req);
            ReqKey {
                index,
                generation: slot.0,
            }
        } else {
            self.slots.push((0, Some(req)));
            ReqKey {
                index: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    pub fn get(&self, key: ReqKey) -> Option<&Request> {
        match self.slots.get(key.index as usize) {
            Some((g, Some(r))) if *g == key.generation => Some(r),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: ReqKey) -> Option<&mut Request> {
        match self.slots.get_mut(key.index as usize) {
            Some((g, Some(r))) if *g == key.generation => Some(r),
            _ => None,
        }
    }

    /// The request behind a key known to be live; panics otherwise (a scheduler bug).
    pub fn req(&self, key: ReqKey) -> &Request {
        self.get(key).expect("stale request key")
    }

    pub fn req_mut(&mut self, key: ReqKey) -> &mut Request {
        self.get_mut(key).expect("stale request key")
    }

    pub fn remove(&mut self, key: ReqKey) -> Option<Request> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.0 != key.generation || slot.1.is_none() {
            return None;
        }
        self.free.push(key.index);
        self.len -= 1;
        slot.1.take()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
