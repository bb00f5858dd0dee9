//! The cache index's table: one block id per block hash, in a fixed-size open-addressing table.
//!
//! Why not a general hash map: in a table too large for the caches (tens of thousands of
//! cached blocks, and in a fleet one table per instance), a lookup in hashbrown's layout reads
//! two cache lines one after the other, its control bytes and then the entry they point to,
//! and every block the pool hands out evicts a random entry. Here an entry packs a 32-bit
//! fingerprint of the hash beside the block id, so a probe reads one line; the table never
//! grows (the pool bounds how many blocks can be cached), so the line a hash starts its probe
//! in is known from the hash alone and can be asked for ahead ([`HashSlots::prefetch`]).
//!
//! Linear probing; removal shifts later entries of the run back (no tombstones). Equality is
//! decided by the caller (`eq`), which reads the block's full hash: a fingerprint match alone
//! proves nothing.

use super::block_pool::BlockId;
use super::hash::BlockHash;

/// An entry: the fingerprint in the high 32 bits, the block id + 1 in the low 32 (0: empty).
type Entry = u64;

const EMPTY: Entry = 0;

/// The table's hash of a block hash: the block hash is already uniform (XXH3), so folding its
/// halves suffices; the multiply spreads small hand-made hashes (tests) over the high bits,
/// which are the ones used (see [`fingerprint`]).
fn mix(h: BlockHash) -> u64 {
    ((h.0 as u64) ^ ((h.0 >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The high 32 bits of [`mix`]; its leading bits are also the entry's home slot, so that an
/// entry's home is known without reading the block's hash (needed when removal shifts it).
fn fingerprint(h: BlockHash) -> u32 {
    (mix(h) >> 32) as u32
}

fn pack(fp: u32, b: BlockId) -> Entry {
    debug_assert!(b < u32::MAX);
    (fp as u64) << 32 | (b as u64 + 1)
}

fn block_of(e: Entry) -> BlockId {
    (e as u32).wrapping_sub(1)
}

fn fingerprint_of(e: Entry) -> u32 {
    (e >> 32) as u32
}

#[derive(Debug)]
pub(super) struct HashSlots {
    entries: Box<[Entry]>,
    /// `32 - log2(entries.len())`: a fingerprint shifted right by this is its home slot.
    shift: u32,
    len: usize,
}

/// A position in the table, valid until the next insert or removal.
#[derive(Copy, Clone, Debug)]
pub(super) struct Pos(usize);

impl HashSlots {
    /// The fewest slots a table has.
    const MIN_SLOTS: usize = 16;

    /// A table for at most `max_len` entries, filled at most two thirds (a lookup reads about
    /// two entries, one cache line). Its memory is zeroed lazily by the system: slots never
    /// written cost nothing.
    pub(super) fn with_max_len(max_len: usize) -> HashSlots {
        let slots = (max_len + max_len / 2 + 1)
            .next_power_of_two()
            .max(Self::MIN_SLOTS);
        assert!(
            slots <= 1 << 32,
            "a cache index of {max_len} blocks is too large"
        );
        HashSlots {
            entries: vec![EMPTY; slots].into_boxed_slice(),
            shift: 32 - slots.trailing_zeros(),
            len: 0,
        }
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    fn home(&self, fp: u32) -> usize {
        // `shift` is at most 28 (at least 16 slots), so this is the fingerprint's leading bits.
        (fp >> self.shift) as usize
    }

    /// The entry of `h` whose block `eq` accepts.
    pub(super) fn find(&self, h: BlockHash, eq: impl Fn(BlockId) -> bool) -> Option<Pos> {
        let fp = fingerprint(h);
        let mut i = self.home(fp);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                return None;
            }
            if fingerprint_of(e) == fp && eq(block_of(e)) {
                return Some(Pos(i));
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Adds `b` under `h` unless an entry `eq` accepts is there already (then `false`,
    /// nothing changed): one probe, which ends at that entry or at the empty slot it fills.
    pub(super) fn insert_if_absent(
        &mut self,
        h: BlockHash,
        b: BlockId,
        eq: impl Fn(BlockId) -> bool,
    ) -> bool {
        assert!(
            self.len + 1 < self.entries.len(),
            "cache index full: more cached blocks than it was sized for"
        );
        let fp = fingerprint(h);
        let mut i = self.home(fp);
        loop {
            let e = self.entries[i];
            if e == EMPTY {
                self.entries[i] = pack(fp, b);
                self.len += 1;
                return true;
            }
            if fingerprint_of(e) == fp && eq(block_of(e)) {
                return false;
            }
            i = (i + 1) & self.mask();
        }
    }

    pub(super) fn block(&self, p: Pos) -> BlockId {
        block_of(self.entries[p.0])
    }

    /// Puts `b` in place of the block at `p`, under the same hash.
    pub(super) fn replace(&mut self, p: Pos, b: BlockId) {
        let e = &mut self.entries[p.0];
        *e = pack(fingerprint_of(*e), b);
    }

    /// Removes the entry at `p`, moving later entries of its run back so that every entry stays
    /// reachable from its home slot.
    pub(super) fn remove(&mut self, p: Pos) {
        let mask = self.mask();
        let mut hole = p.0;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e == EMPTY {
                break;
            }
            // The entry may fill the hole if its home is not after the hole on its way to `j`.
            let home = self.home(fingerprint_of(e));
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
    }

    pub(super) fn clear(&mut self) {
        self.entries.fill(EMPTY);
        self.len = 0;
    }

    /// Every block in the table, in slot order.
    pub(super) fn blocks(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.entries
            .iter()
            .filter(|&&e| e != EMPTY)
            .map(|&e| block_of(e))
    }

    /// Asks the CPU for the cache line where a probe for `h` starts ([`crate::prefetch`]).
    #[inline]
    pub(super) fn prefetch(&self, h: BlockHash) {
        let i = self.home(fingerprint(h));
        crate::prefetch::line(self.entries.as_ptr().wrapping_add(i));
    }

    /// The table's own invariants, given each block's hash: every entry's fingerprint is its
    /// hash's, no empty slot lies between an entry's home and its slot, and `len` counts the
    /// entries.
    pub(super) fn check(&self, hash_of: impl Fn(BlockId) -> BlockHash) -> Result<(), String> {
        let mask = self.mask();
        let mut count = 0;
        for (i, &e) in self.entries.iter().enumerate() {
            if e == EMPTY {
                continue;
            }
            count += 1;
            let fp = fingerprint(hash_of(block_of(e)));
            if fp != fingerprint_of(e) {
                return Err(format!("cache index slot {i}: fingerprint of another hash"));
            }
            let mut k = self.home(fp);
            while k != i {
                if self.entries[k] == EMPTY {
                    return Err(format!(
                        "cache index slot {i} is unreachable from its home slot"
                    ));
                }
                k = (k + 1) & mask;
            }
        }
        if count != self.len {
            return Err(format!(
                "cache index holds {count} entries, its count says {}",
                self.len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Hashes that share a home slot in a 16-slot table (the fingerprint's top 4 bits), to
    /// build long runs that wrap around the end.
    fn colliding(n: usize, home: u32) -> Vec<BlockHash> {
        (0u128..)
            .map(BlockHash)
            .filter(|&h| fingerprint(h) >> 28 == home)
            .take(n)
            .collect()
    }

    #[test]
    fn sized_for_two_thirds_at_most() {
        assert_eq!(HashSlots::with_max_len(0).entries.len(), 16);
        assert_eq!(HashSlots::with_max_len(10).entries.len(), 16);
        assert_eq!(HashSlots::with_max_len(11).entries.len(), 32);
        assert_eq!(HashSlots::with_max_len(36_000).entries.len(), 65_536);
    }

    #[test]
    fn removal_keeps_wrapped_runs_reachable() {
        // Ten entries homed at slot 14 of 16 run over the end to slot 7.
        let hashes = colliding(10, 14);
        let mut t = HashSlots::with_max_len(10);
        let by_block: HashMap<BlockId, BlockHash> = (1..=10).zip(hashes.iter().copied()).collect();
        for (&b, &h) in by_block.iter() {
            assert!(t.insert_if_absent(h, b, |_| false));
        }
        t.check(|b| by_block[&b]).unwrap();
        // Remove from the middle of the run, then its start, then its end.
        let mut left: Vec<BlockId> = (1..=10).collect();
        for b in [5, 1, 10, 3] {
            let p = t.find(by_block[&b], |x| x == b).expect("present");
            t.remove(p);
            left.retain(|&x| x != b);
            t.check(|b| by_block[&b]).unwrap();
            for &x in &left {
                let p = t.find(by_block[&x], |y| y == x).expect("still reachable");
                assert_eq!(t.block(p), x);
            }
            assert!(t.find(by_block[&b], |y| y == b).is_none());
        }
        assert_eq!(t.len, left.len());
    }

    #[test]
    fn matches_a_map_under_random_operations() {
        // A small table under a long random sequence: every answer as a map's.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let max = 40;
        let mut t = HashSlots::with_max_len(max);
        let mut model: HashMap<u128, BlockId> = HashMap::new();
        let mut hash_of_block: HashMap<BlockId, BlockHash> = HashMap::new();
        let mut next_block: BlockId = 1;
        for step in 0..20_000 {
            // Few distinct hashes, with colliding low bits, so runs form and break.
            let h = BlockHash((next() % 64) as u128 * 0x1_0000);
            match model.get(&h.0).copied() {
                Some(b) if next() % 3 != 0 => {
                    let p = t.find(h, |x| x == b).expect("in the table");
                    if next() % 2 == 0 {
                        t.remove(p);
                        model.remove(&h.0);
                    } else {
                        t.replace(p, next_block);
                        hash_of_block.insert(next_block, h);
                        model.insert(h.0, next_block);
                        next_block += 1;
                    }
                }
                Some(_) => {
                    // Present already: refused, nothing changed.
                    assert!(!t.insert_if_absent(h, next_block, |x| hash_of_block[&x] == h));
                }
                None if model.len() < max => {
                    assert!(t.insert_if_absent(h, next_block, |x| hash_of_block[&x] == h));
                    hash_of_block.insert(next_block, h);
                    model.insert(h.0, next_block);
                    next_block += 1;
                }
                None => {}
            }
            if step % 97 == 0 {
                t.check(|b| hash_of_block[&b]).unwrap();
            }
            for (&k, &b) in &model {
                let p = t.find(BlockHash(k), |x| hash_of_block[&x].0 == k);
                assert_eq!(p.map(|p| t.block(p)), Some(b));
            }
            assert_eq!(t.len, model.len());
        }
        let mut blocks: Vec<BlockId> = t.blocks().collect();
        blocks.sort_unstable();
        let mut expected: Vec<BlockId> = model.values().copied().collect();
        expected.sort_unstable();
        assert_eq!(blocks, expected);
        t.clear();
        assert_eq!(t.len, 0);
        assert_eq!(t.blocks().count(), 0);
    }
}
