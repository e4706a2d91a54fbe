//! MNIST in the IDX format.
