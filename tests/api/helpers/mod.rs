//! Test helpers, by what they help with: the in-process app (`app`), raw HTTP over TCP
//! (`raw`), the real binary (`binary`), the store's invariants seen from outside
//! (`invariants`), assertions on answers (`assert`), files to start from (`fixtures`),
//! what a hostile tree plants (`hostile`), a probe that collects what the binary got
//! wrong (`probe`), the system tools around the binary (`system`), and a client of the
//! change feed (`sse`). Every test module takes them all with `use crate::helpers::*`.

#![allow(dead_code)]

mod app;
mod assert;
mod binary;
mod fixtures;
mod hostile;
mod invariants;
mod probe;
mod raw;
mod sse;
mod system;

pub use app::*;
pub use assert::*;
pub use binary::*;
pub use fixtures::*;
pub use hostile::*;
pub use invariants::*;
pub use probe::*;
pub use raw::*;
pub use sse::*;
pub use system::*;
