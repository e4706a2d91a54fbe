//! Integration tests for compress-nn.

mod augment;
mod conv;
mod conv_fast;
mod gradcheck;
mod io;
mod layers;
mod linear_eval;
mod mnist;
mod optim;
mod parametrize;
mod sequential_names;
mod training;
mod transformer;
mod transformer_surgery;
