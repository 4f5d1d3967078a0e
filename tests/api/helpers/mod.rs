//! Test helpers, by what they help with: the in-process app (`app`), raw HTTP over TCP
//! (`raw`), the real binary (`binary`), the store's invariants seen from outside
//! (`invariants`), assertions on answers (`assert`), files to start from (`fixtures`)
//! and a client of the change feed (`sse`). Every test module takes them all with
//! `use crate::helpers::*`.

#![allow(dead_code)]

mod app;
mod assert;
mod binary;
mod fixtures;
mod invariants;
mod raw;
mod sse;

pub use app::*;
pub use assert::*;
pub use binary::*;
pub use fixtures::*;
pub use invariants::*;
pub use raw::*;
pub use sse::*;
