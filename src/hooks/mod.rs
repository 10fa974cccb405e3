//! Webhook intake.

pub mod adnanh;
pub mod body;
pub mod coerce;
pub mod dedup;
pub mod def;
pub mod intake;
pub mod json;
pub mod params;
pub mod providers;
pub mod rules;
pub mod secret;
pub mod stored;
pub mod summary;
