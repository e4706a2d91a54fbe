//! Integration tests of compress-checkpoint: model files read both ways, bad input.

mod bad_input;
mod fuzz;
mod model;
mod streaming;
