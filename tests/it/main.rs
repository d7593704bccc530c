//! The integration tests: one test binary, driving the real `dds-certsync`
//! binary (and, where time must be controlled, the real library) against the
//! local HTTPS stand-in of DDS.

mod support;

mod auth;
mod bad_input;
mod cli_and_config;
mod daemon;
mod disk_faults;
mod fault_suite;
mod fuzz_seeds;
mod hooks_delivery;
mod hostile_config;
mod once;
mod packaging;
mod readers;
mod secrets;
mod service;
mod torture;
