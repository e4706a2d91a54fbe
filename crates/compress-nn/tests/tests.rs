//! Integration tests for compress-nn.

mod conv;
mod gradcheck;
mod io;
mod layers;
mod mnist;
mod optim;
mod parametrize;
mod training;
