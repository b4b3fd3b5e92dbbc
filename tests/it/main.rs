//! shardio's integration tests, in one test binary so that the harness (`common`) and the
//! library are compiled and linked once: `cargo test --test it`, or one module with
//! `cargo test --test it gateway::`. The real-client scripts stay in `tests/js/` and `tests/py/`.

mod common;
mod layout;

mod api;
mod auth;
mod bench_generator;
mod config;
mod defects;
mod deflate;
mod demo;
mod deploy;
mod engineio;
mod faults;
mod framing;
mod fuzz_corpus;
mod gateway;
mod interest;
mod limits;
mod ops;
mod polling;
mod rcluster;
mod real_client;
mod recovery;
mod recovery_streams;
mod redis;
mod redis_rooms;
mod redis_streams;
mod runtime;
mod soak;
mod socketio;
mod tls;
mod ws_limits;
