//! Integration tests of compress-prune (one binary).

mod calibrated;
mod common;
mod masks;
mod nm;
mod schedule;
mod select;
mod sparse;
mod sparse24;
mod stream;
mod structured;
mod structured_coupled;
mod structured_grouped;
