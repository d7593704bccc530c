//! The integration tests: one test binary, driving the real `dds-certsync`
//! binary (and, where time must be controlled, the real library) against the
//! local HTTPS stand-in of DDS.

mod support;

mod archives;
mod auth;
mod bad_input;
mod cli_and_config;
mod daemon;
mod disk_faults;
mod durability;
mod fault_suite;
mod fuzz_seeds;
mod healing;
mod hook_hygiene;
mod hooks_delivery;
mod hostile_cloud;
mod hostile_config;
mod hostile_files;
mod hostile_followup;
mod hostile_hooks;
mod hostile_review;
mod hostile_service;
mod once;
mod overlap;
mod packaging;
mod probe;
mod readers;
mod reads;
mod reload;
mod rotation;
mod secrets;
mod service;
mod services;
mod torture;
mod trust;
mod truststore;
