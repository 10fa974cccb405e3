//! Several nodes on one Redis: the shared log, its reader and the roles nodes hold.

pub mod config;
