//! Integration tests of compress-arch.

mod blocks;
mod common;
mod cost;
mod lowrank;
