//! The `cluster` section's type: several nodes sharing one Redis. `crate::config` fills it in
//! (`config/cluster.rs`); the cluster's owner reads it.
