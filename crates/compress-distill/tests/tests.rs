//! Integration tests of compress-distill (one binary; one module per concern).

mod common;
mod distiller;
mod dkd;
mod embedding;
mod feature;
mod kd;
mod sequence;
mod softmax;
