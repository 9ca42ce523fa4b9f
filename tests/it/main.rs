//! The in-process integration tests, one binary: real servers over loopback, real
//! databases where their environment variables name them. Kept apart: `tests/alloc.rs`
//! (its own global allocator), `tests/panics.rs` (its own panic hook), `tests/browser/`
//! (Chromium over WebDriver).

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod cache;
mod change_feed;
#[cfg(feature = "cli")]
mod cli;
mod concurrency;
mod connect;
mod demo;
#[path = "../../examples/demo/app.rs"]
mod demo_app;
mod faults;
#[cfg(feature = "laravel")]
mod formats;
mod grpc;
mod http;
mod hyper;
#[cfg(feature = "laravel")]
mod laravel;
mod last_used;
mod layer_lifecycle;
#[cfg(feature = "leaks")]
mod leaks;
mod lifecycle;
mod lifecycle_api;
mod logging;
mod manage;
#[cfg(feature = "metrics")]
mod metrics;
mod props;
mod ready;
#[cfg(feature = "redis")]
mod redis;
mod revocation;
mod secrets;
mod store_stack;
mod stores;
