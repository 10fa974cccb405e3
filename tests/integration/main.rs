//! One integration-test binary: every test starts the real `hookcast` binary on an ephemeral
//! loopback port and talks to it over TCP, with our raw sockets or with independent clients.

mod util;

mod adnanh;
mod burst;
mod cli;
mod client;
mod cluster;
mod dashboards;
mod durable;
mod eventsource;
mod filter;
mod hooks;
mod http;
mod inspect;
mod journal_full;
mod jwt;
mod logs;
mod monitoring;
mod ops;
mod poll;
mod proxy;
mod reload;
mod retain;
mod runner;
mod sources;
mod sse;
mod status;
mod storm;
mod ws;
