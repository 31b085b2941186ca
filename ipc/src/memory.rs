//! How the processes that move track bytes (mountd and fetchd) use the C allocator.
//!
//! Every read answer is a buffer of up to 1 MiB, allocated, copied through and freed several
//! times on its way from a chunk to the kernel. glibc serves blocks that large with `mmap` and
//! hands them back with `munmap` on free, so each buffer's pages were faulted in and zeroed
//! again on every read: measured with `ipc/examples/rpc_bench.rs`, that was half the cost of a
//! 1 MiB round trip. Keeping such blocks in the heap reuses the same pages instead.

/// Blocks up to this size come from the heap and stay there when freed.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap beyond this goes back to the system.
const TRIM_THRESHOLD: i32 = 128 << 20;

/// Keeps large buffers in the heap (glibc); elsewhere the allocator is left as it is.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
