//! Cache prefetch hints: a loop over a step's requests, whose records are scattered in memory
//! (and, in a fleet, evicted while the other instances ran), asks for the records a few
//! requests ahead so that their memory latency overlaps the work on the current one. A hint
//! changes no result: it reads nothing, never faults, and is a no-op off x86_64.

/// Asks for the cache lines of the first `len` bytes (at most the value's size) of the value
/// at `p`; with `len` known when compiling, the loop unrolls into a few prefetch instructions.
#[inline]
pub(crate) fn prefix<T>(p: *const T, len: usize) {
    let len = len.min(std::mem::size_of::<T>());
    if len == 0 {
        return;
    }
    let start = p.cast::<u8>();
    let mut offset = 0;
    while offset < len {
        line(start.wrapping_add(offset));
        offset += 64;
    }
    // The value need not start on a line: its last byte may lie one line further.
    line(start.wrapping_add(len - 1));
}

/// Asks for the cache line holding `p`.
#[inline]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE, which `_mm_prefetch` needs, is part of every x86_64 CPU, and a prefetch
        // dereferences nothing (any address, even a dangling one, is allowed).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
