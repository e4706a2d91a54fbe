//! Integration tests for compress-nn.

mod training;
