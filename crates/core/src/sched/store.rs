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

/// A request's place: its generation first, so that the check of a key and the request's hot
/// fields ([`Request::COLD_FIELDS_START`]) share the leading cache lines.
#[derive(Debug)]
#[repr(C)]
struct Slot {
    generation: u32,
    req: Option<Request>,
}

/// Bytes from a slot's start through its request's hot fields.
const SLOT_HOT_BYTES: usize = std::mem::offset_of!(Slot, req) + Request::COLD_FIELDS_START;

#[derive(Debug, Default)]
pub struct RequestStore {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl RequestStore {
    pub fn insert(&mut self, req: Request) -> ReqKey {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.req = Some(req);
            ReqKey {
                index,
                generation: slot.generation,
            }
        } else {
            self.slots.push(Slot {
                generation: 0,
                req: Some(req),
            });
            ReqKey {
                index: (self.slots.len() - 1) as u32,
                generation: 0,
            }
        }
    }

    pub fn get(&self, key: ReqKey) -> Option<&Request> {
        match self.slots.get(key.index as usize) {
            Some(Slot {
                generation,
                req: Some(r),
            }) if *generation == key.generation => Some(r),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: ReqKey) -> Option<&mut Request> {
        match self.slots.get_mut(key.index as usize) {
            Some(Slot {
                generation,
                req: Some(r),
            }) if *generation == key.generation => Some(r),
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
        if slot.generation != key.generation || slot.req.is_none() {
            return None;
        }
        self.free.push(key.index);
        self.len -= 1;
        slot.req.take()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl RequestStore {
    /// Asks the CPU to start loading the hot part of the record behind `key`
    /// ([`crate::prefetch`]); a stale or unknown key costs nothing.
    #[inline]
    pub fn prefetch(&self, key: ReqKey) {
        if let Some(slot) = self.slots.get(key.index as usize) {
            crate::prefetch::prefix(std::ptr::from_ref(slot), SLOT_HOT_BYTES);
        }
    }
}
