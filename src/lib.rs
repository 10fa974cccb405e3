//! hookcast: a self-hosted push daemon. One `mio` event loop owns every socket; HTTP/1.1,
//! Server-Sent Events and RFC 6455 are implemented here on a handful of small crates.
//!
//! Data flow: socket bytes → [`conn`] (state machine) → [`http::request`] → [`http::router`] →
//! [`api`] → [`hub`] (encode once) → subscribers' queues ([`buf`]) → `writev`.

pub mod api;
pub mod app;
pub mod auth;
pub mod browser;
pub mod buf;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod event_loop;
pub mod filter;
pub mod follow;
pub mod hooks;
pub mod http;
pub mod hub;
pub mod journal;
pub mod jwt;
pub mod logger;
pub mod metrics;
pub mod notify;
pub mod redis;
pub mod runner;
pub mod sessions;
pub mod sources;
pub mod sse;
pub mod status;
pub mod sys;
pub mod topic;
pub mod write_queue;
pub mod ws;
