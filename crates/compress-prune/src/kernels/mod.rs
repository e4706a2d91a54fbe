//! Hot loops, the only place in the crate that uses `unsafe` (std::arch SIMD behind runtime
//! detection through [`compress_core::Isa`], each unsafe block with a SAFETY comment and a
//! portable twin the tests compare it with).
//!
//! - [`csr`]: CSR x dense SpMM.
//! - [`nm24`]: 2:4 semi-structured sparse x dense products.
#![allow(unsafe_code)]

pub(crate) mod csr;
pub(crate) mod nm24;

pub(crate) use csr::spmm;
