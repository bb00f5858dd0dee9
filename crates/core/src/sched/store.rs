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
///
/// The generation also says whether the slot is taken: odd while a request lives there, even
/// once it has left ([`Request::vacant`] stands in). An `Option<Request>` would keep that in a
/// niche the compiler picks, which lay in the record's last cache line (a cold field's enum
/// tag), so that every lookup loaded a line the step otherwise never reads. A slot starts on a
/// cache line, so that the hot fields always take the fewest lines (five, not five or six).
#[derive(Debug)]
#[repr(C, align(64))]
struct Slot {
    generation: u32,
    req: Request,
}

impl Slot {
    fn is_live(&self) -> bool {
        self.generation % 2 == 1
    }
}

/// Bytes from a slot's start through its request's hot fields.
const SLOT_HOT_BYTES: usize = std::mem::offset_of!(Slot, req) + Request::COLD_FIELDS_START;

// A slot starts on a cache line (`align(64)`), so its hot fields take five lines; a field
// added to them that makes six should be weighed against a step's memory traffic.
const _: () = assert!(SLOT_HOT_BYTES <= 5 * 64);

#[derive(Debug, Default)]
pub struct RequestStore {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
}

impl RequestStore {
    pub fn insert(&mut self, req: Request) -> ReqKey {
        self.len += 1;
        let index = if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            debug_assert!(!slot.is_live());
            slot.generation = slot.generation.wrapping_add(1);
            slot.req = req;
            index
        } else {
            self.slots.push(Slot { generation: 1, req });
            (self.slots.len() - 1) as u32
        };
        ReqKey {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    /// The slot behind `key` if its request still lives there. A key's generation is odd, so
    /// an equal generation means a live slot (see [`Slot`]).
    fn slot(&self, key: ReqKey) -> Option<&Slot> {
        self.slots
            .get(key.index as usize)
            .filter(|slot| slot.generation == key.generation)
    }

    pub fn get(&self, key: ReqKey) -> Option<&Request> {
        self.slot(key).map(|slot| &slot.req)
    }

    pub fn get_mut(&mut self, key: ReqKey) -> Option<&mut Request> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|slot| slot.generation == key.generation)
            .map(|slot| &mut slot.req)
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
        if slot.generation != key.generation || !slot.is_live() {
            return None;
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(std::mem::replace(&mut slot.req, Request::vacant()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{NewRequest, SamplingParams};

    fn request(id: &str) -> Request {
        let new = NewRequest {
            request_id: id.into(),
            prompt_token_ids: vec![1, 2, 3].into(),
            sampling: SamplingParams {
                max_tokens: 4,
                ..Default::default()
            },
            priority: 0,
            cache_salt: None,
            tenant: None,
            arrival: crate::time::Nanos(0),
        };
        Request::new(new, crate::time::Nanos(0), 16, false)
    }

    #[test]
    fn a_removed_request_stops_resolving_even_when_its_slot_is_reused() {
        let mut store = RequestStore::default();
        let a = store.insert(request("a"));
        let b = store.insert(request("b"));
        assert_eq!(store.len(), 2);
        assert_eq!(store.req(a).request_id, "a");
        let removed = store.remove(a).expect("live");
        assert_eq!(removed.request_id, "a");
        assert!(store.get(a).is_none());
        assert!(store.get_mut(a).is_none());
        assert!(store.remove(a).is_none(), "removed twice");
        assert_eq!(store.len(), 1);
        // The freed slot takes the next request under a new generation.
        let c = store.insert(request("c"));
        assert_eq!(c.index, a.index);
        assert_ne!(c.generation, a.generation);
        assert!(
            store.get(a).is_none(),
            "the old key must not see the new request"
        );
        assert_eq!(store.req(c).request_id, "c");
        assert_eq!(store.req(b).request_id, "b");
        assert_eq!(store.len(), 2);
    }
}
