//! Integration tests for compress-core.

mod parametrize;
mod surgery;
mod visitor;
