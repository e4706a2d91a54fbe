//! Efficient architectures for netcompress: depthwise separable and other efficient blocks
//! with exact cost accounting, closed-form cost formulas, and low-rank factorization.
//!
//! ```
//! use compress_arch::lowrank::{LowRankConfig, RankRule, factorize_sequential};
//! use compress_core::Module;
//! use compress_nn::models::mlp;
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let mut net = mlp::<f32, _>(&[64, 128, 10], &mut StdRng::seed_from_u64(0));
//! let before = net.num_params();
//! let cfg = LowRankConfig::new(RankRule::ParamsFraction(0.5));
//! let report = factorize_sequential(&mut net, &[0], &cfg).unwrap();
//! assert_eq!(report[0].rank, 21); // 21 * (64 + 128) <= 0.5 * 64 * 128
//! assert!(net.num_params() < before);
//! ```
//!
//! **MSRV:** 1.89
//!
//! Other crates: `compress-core` (traits), `compress-nn` (layers and training), and the
//! `netcompress` facade.
#![doc(test(attr(deny(warnings))))]

pub mod blocks;
pub mod cost;
mod error;
pub mod lowrank;

pub use error::{ArchError, Result};
