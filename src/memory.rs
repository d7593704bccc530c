//! Giving memory the program has freed back to the system.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena, for
//! that arena's next allocations; the pages stay resident. Parsing the config
//! makes the largest short-lived allocation of a run (the TOML parser holds
//! every token of the file and a tree of it, together about 20 times the
//! file's size), on a blocking-pool thread whose arena the rounds hardly use.
//! [`release_freed`] after the load returns those pages, so that the run's
//! resident size is set by what it keeps (the config, and what the rounds in
//! flight hold), not by the parse. Other allocators (musl's, in the container
//! image) return freed memory by themselves; there it does nothing.

/// Returns the free pages of every allocator arena to the system.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it takes no pointer and is safe to call from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
