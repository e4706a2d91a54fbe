//! Integration tests of compress-arch.

mod blocks;
mod cost;
mod lowrank;
