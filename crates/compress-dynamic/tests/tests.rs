//! Integration tests of compress-dynamic (one binary).

mod budget_routing;
mod calibration;
mod common;
mod early_exit;
mod eval_path;
mod gradients;
mod slimmable;
