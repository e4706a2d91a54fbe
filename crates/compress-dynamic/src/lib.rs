//! Dynamic computation for netcompress: networks that spend less work on easy inputs,
//! and skip that work for real.
//!
//! - **Early exits** (BranchyNet): [`EarlyExitNet`] is a backbone of stages with exit heads;
//!   [`train_early_exit`] trains all exits jointly (optionally distilling the last exit into
//!   the earlier ones), or [`train_exit_heads`] trains only the heads added with
//!   [`EarlyExitNet::insert_exit`] to a trained network, on its frozen backbone (its own
//!   accuracy unchanged); [`EarlyExitNet::infer`] runs a batch and, after each exit, forwards
//!   only the samples that have not left (regrouped with `select`), counting the MACs each
//!   sample really used. Exit rules: max softmax `>= tau` or entropy `<= tau`
//!   ([`ExitRule`]).
//! - **Calibration**: [`EarlyExitNet::profile`] on a validation split, then [`calibrate`]
//!   picks one threshold per exit to meet an accuracy target (within a drop of the last
//!   exit) or an average-MAC budget at the best accuracy; [`tradeoff_curve`] gives
//!   accuracy vs average MACs.
//! - **Budgets**: [`Budget`] (a MAC cap per sample, or a battery level) picks the deepest
//!   exit that fits, per batch ([`EarlyExitNet::infer_budget`]) or per sample
//!   ([`EarlyExitNet::infer_budgets`]).
//! - **Slimmable widths**: [`SlimmableLinear`], [`SlimmableConv2d`],
//!   [`SwitchableBatchNorm`] and [`SlimmableNet::set_width`]; [`train_sandwich`] (sandwich
//!   rule with inplace distillation), [`recalibrate_bn`] for a new width.
//! - **Routing**: [`Cascade`] of cheap-to-expensive models and
//!   [`SlimmableNet::route`] (smallest width first) use the same profiles and calibration.
//! - **Work really skipped**: inference sends only the running samples through each stage
//!   (regrouped at every exit); compress-nn's `Linear` eval path (a weight transposed once,
//!   no per-call packing) makes the few-row products of the deep stages and the narrow exit
//!   heads cost what their MACs cost, with results independent of the batch; exit tests
//!   decide most rows from the gap of the top two logits without any `exp`, eight rows at a
//!   time.
//!
//! ```
//! use compress_dynamic::{
//!     calibrate, train_early_exit, CalibrationTarget, EarlyExitNet, ExitRule, ExitTrainConfig,
//! };
//! use compress_nn::{data::digits, Adam, Linear, ReLU, Sequential};
//! use rand::{SeedableRng, rngs::StdRng};
//! # fn main() -> compress_dynamic::Result<()> {
//! let (train, test) = digits::<f32>()?;
//! let (train, valid) = train.split_stratified(0.2, 1)?;
//! let mut rng = StdRng::seed_from_u64(0);
//! let block = |i, o, rng: &mut StdRng| Sequential::new().with(Linear::new(i, o, true, rng)).with(ReLU::new());
//! let mut net = EarlyExitNet::new(&[64])
//!     .with_stage(block(64, 32, &mut rng))
//!     .with_exit(Linear::new(32, 10, true, &mut rng))
//!     .with_stage(block(32, 128, &mut rng))
//!     .with_stage(block(128, 128, &mut rng))
//!     .with_exit(Linear::new(128, 10, true, &mut rng));
//! let cfg = ExitTrainConfig { epochs: 5, ..ExitTrainConfig::default() };
//! train_early_exit(&mut net, &mut Adam::new(3e-3), &train, &cfg)?;
//!
//! let profile = net.profile(&valid, ExitRule::MaxSoftmax, 256)?;
//! let cal = calibrate(&profile, CalibrationTarget::AccuracyDrop { max_drop: 0.01 })?;
//! let out = net.infer(&test.x, &cal.thresholds)?;
//! assert!(out.avg_macs() <= net.exit_costs()?.full() as f64 + 1e-9 || out.exit_fractions()[1] > 0.9);
//! println!("accuracy {:.3}, {:.0} MACs/sample", out.accuracy(&test.labels), out.avg_macs());
//! # Ok(()) }
//! ```
//!
//! **MSRV:** 1.89
//!
//! Other crates: `compress-core` (traits), `compress-nn` (layers and training), and the
//! `netcompress` facade.
#![doc(test(attr(deny(warnings))))]

mod budget;
mod calibrate;
mod early_exit;
mod error;
mod output;
mod profile;
mod routing;
mod rule;
mod slimmable;

pub use budget::Budget;
pub use calibrate::{
    Calibration, CalibrationConfig, CalibrationTarget, CurvePoint, calibrate, calibrate_with,
    tradeoff_curve,
};
pub use early_exit::{
    EarlyExitNet, ExitDistill, ExitEpochStats, ExitTrainConfig, ExitTrainReport, joint_exit_loss,
    train_early_exit, train_exit_heads,
};
pub use error::{DynamicError, Result};
pub use output::DynamicOutput;
pub use profile::{ExitCosts, ExitProfile, Simulation, Thresholds};
pub use routing::Cascade;
pub use rule::{ExitRule, distill_loss};
pub use slimmable::{
    SandwichConfig, SandwichEpoch, SandwichReport, SlimLayer, Slimmable, SlimmableConv2d,
    SlimmableLinear, SlimmableNet, SwitchableBatchNorm, active_channels, check_width,
    recalibrate_bn, train_sandwich,
};
