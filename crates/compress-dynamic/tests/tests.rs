//! Integration tests of compress-dynamic (one binary).

mod budget_routing;
mod calibration;
mod common;
mod early_exit;
mod eval_path;
mod frozen_backbone;
mod gradients;
mod slimmable;
