#!/bin/sh
# The demo: builds dds-certsync and the local stand-in of DDS, then runs
# them end to end (see standin/src/bin/dds-demo.rs). Needs only Rust.
set -e
cd "$(dirname "$0")"
cargo build --quiet --workspace --bins
exec target/debug/dds-demo "$@"
