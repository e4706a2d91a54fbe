//! Integration tests for compress-transformer (one binary).

mod common;
mod fixture;
