//! Integration tests for compress-core.

mod parametrize;
mod visitor;
