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
//!
//! [`one_arena`] keeps the allocations of every thread in one glibc arena.
//! The rounds' file work runs on blocking-pool threads, and glibc gives each
//! thread that finds the main arena busy an arena of its own, up to eight per
//! core; what one thread frees there is reused only by the threads on that
//! arena, so each arena holds its own high-water mark of round data. `--once`
//! over 10,000 instances peaked at 36 MiB resident with the default and at
//! 28.5 MiB with one arena, the same run's CPU within noise: the hot
//! allocations go through each thread's cache (tcache), which takes no lock.

/// Returns the free pages of every allocator arena to the system.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own free
    // lists; it takes no pointer and is safe to call from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Puts every thread's allocations in one allocator arena (glibc), unless
/// the user chose otherwise with `MALLOC_ARENA_MAX`. Call first in `main`,
/// before any thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt sets one tuning parameter of the allocator; it
        // takes no pointer, and no other thread allocates yet.
        unsafe {
            nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
        }
    }
}
