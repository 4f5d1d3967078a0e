//! The one integration-test binary (one link step keeps builds short on two cores).
//! Each module is a concern; `helpers` spawns the real app over real HTTP.

mod helpers;

mod active;
mod archive;
mod binary;
mod bodies;
mod client;
mod compat;
mod concurrency;
mod container;
mod contract;
mod crash;
mod durability;
mod e2e;
mod events;
#[cfg(feature = "failpoints")]
mod failpoints;
mod hostile;
mod http_hardening;
#[cfg(feature = "failpoints")]
mod hung;
mod index;
mod labels;
mod observability;
mod persona_cache;
mod personas;
mod reload;
mod runs;
mod security;
mod sessions;
mod transcript;
mod ui;
