//! In-process tests of the daemon, in paused time.
