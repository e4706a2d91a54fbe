//! Integration tests of compress-testkit: the gradient checker catches wrong gradients.

mod gradcheck;
mod parametrize;
