//! Integration tests for compress-transformer (one binary).

mod common;
mod errors;
mod fixture;
mod metrics;
mod minilm;
mod student;
