//! Integration tests for the `netcompress` binary.

mod experiments;
mod files;
mod fixtures;
mod interrupt;
mod prune_model;
mod quantize_dir;
mod support;
mod sweep;
mod transformer;
