//! The integration tests: one test binary, driving the real `dds-certsync`
//! binary (and, where time must be controlled, the real library) against the
//! local HTTPS stand-in of DDS.

mod support;

mod bad_input;
mod cli_and_config;
mod daemon;
mod once;
mod readers;
mod secrets;
