//! What the server asks of the C allocator (glibc's malloc, which OpenCV, ffmpeg's pipes and
//! Rust all share): big blocks in their own mappings, few per-thread heaps, and freed memory
//! handed back to the system when a session ends.

/// Blocks of this size or more get their own mapping, returned to the system on free.
const MMAP_THRESHOLD: libc::c_int = 256 * 1024;

/// Per-thread heaps ("arenas"). glibc's default is 8 per core: a frame path, a detector
/// thread and a socket task each end up with one, and what a session freed stays spread
/// over all of them. Four keep allocation uncontended on this design's few busy threads.
const ARENAS: libc::c_int = 4;

/// Tunes the allocator for the server. Call it first thing in `main`, before any thread
/// (the async runtime's included) starts.
///
/// Frame buffers (~1 MB each) are allocated on many threads. With glibc's default dynamic
/// mmap threshold they end up in per-thread heaps that are rarely returned to the system,
/// and the server's RSS creeps up over hours. A fixed threshold keeps every allocation of
/// 256 KiB or more in its own mapping (the frame pool makes such allocations rare).
pub fn tune() {
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Hands the free memory at the top and in the middle of every heap back to the system.
/// Called when a session's pipeline has ended: without it the server's RSS stays at its
/// highest point after a busy hour. It walks every heap (a few milliseconds), so it runs on
/// a blocking thread.
pub fn give_back() {
    // SAFETY: malloc_trim is thread-safe; 0 keeps no padding at the top of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
