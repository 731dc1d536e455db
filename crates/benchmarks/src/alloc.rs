//! A counting global allocator: install it in a bench binary with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;` and read [`counts`] around the
//! code under test. It counts every allocation and reallocation, process-wide and per thread.
#![allow(unsafe_code)] // One `unsafe impl GlobalAlloc` forwarding to `System`; nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Forwards to the system allocator and counts.
#[derive(Debug)]
pub struct CountingAlloc;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const`-initialized and without a destructor: touching it never allocates.
    static THREAD_ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    BYTES.fetch_add(bytes as u64, Relaxed);
    let _ = THREAD_ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counting touches only atomics and a const thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocation counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Allocations and reallocations, all threads.
    pub allocs: u64,
    /// Bytes requested by them, all threads.
    pub bytes: u64,
    /// Allocations and reallocations on the calling thread.
    pub thread_allocs: u64,
}

/// The counters now (only meaningful when [`CountingAlloc`] is the global allocator).
pub fn counts() -> Counts {
    Counts {
        allocs: ALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
        thread_allocs: THREAD_ALLOCS.try_with(Cell::get).unwrap_or(0),
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;

    fn sub(self, rhs: Counts) -> Counts {
        Counts {
            allocs: self.allocs - rhs.allocs,
            bytes: self.bytes - rhs.bytes,
            thread_allocs: self.thread_allocs - rhs.thread_allocs,
        }
    }
}
