//! Knowledge distillation for netcompress: temperature softmax, the Hinton KD loss with its
//! `T^2` correction, decoupled KD, FitNets hints, embedding distillation, and a
//! [`Distiller`] that trains any student [`Layer`](compress_core::Layer) against any
//! frozen teacher on compress-nn's [`Trainer`](compress_nn::Trainer).
//!
//! Every loss returns its value and its analytic gradient with respect to the student's
//! output, so it plugs into any training loop; all reduce by **batch mean** (summed over
//! classes or features, averaged over samples) and are stable for any finite input.
//!
//! | item | what |
//! |---|---|
//! | [`softmax_with_temperature`], [`log_softmax_with_temperature`], [`soft_targets`] | softened distributions |
//! | [`kl_div`] | `KL(p_T || q_T)`, batch mean, gradient w.r.t. the student |
//! | [`kd_loss`], [`KdConfig`] | `alpha T^2 KL + (1 - alpha) CE` (Hinton et al. 2015) |
//! | [`dkd_loss`], [`DkdConfig`] | decoupled KD: `alpha TCKD + beta NCKD` (Zhao et al. 2022) |
//! | [`HintLoss`] | FitNets: MSE through a learnable regressor |
//! | [`cosine_embedding_loss`], [`mse_embedding_loss`], [`info_nce_loss`] | embedding distillation |
//! | [`Distiller`], [`DistillObjective`], [`TeacherCache`] | training against a frozen teacher |
//! | [`SequenceEncoder`], [`EmbeddingObjective`], [`SequenceDistiller`] | distilling sentence encoders (transformers): pooled-embedding losses + hidden-state hints |
//! | [`WarmupSchedule`], [`clip_grad_norm`] | per-step warm-up + linear/cosine decay, global gradient clipping |
//!
//! ```
//! use compress_distill::{KdConfig, kd_loss};
//! use ndarray::array;
//!
//! let student = array![[2.0f64, 1.0, 0.1]];
//! let teacher = array![[5.0f64, 2.0, -1.0]];
//! let out = kd_loss(&student, &teacher, &[0], &KdConfig::new(4.0, 0.9).unwrap()).unwrap();
//! // loss = 0.9 * 16 * KL + 0.1 * CE
//! assert!((out.loss - (0.9 * 16.0 * out.kl + 0.1 * out.ce)).abs() < 1e-12);
//! ```
//!
//! **MSRV:** 1.89
#![doc(test(attr(deny(warnings))))]

mod distiller;
mod dkd;
mod embedding;
mod error;
mod feature;
mod kd;
mod sequence;
mod softmax;

pub use distiller::{
    DistillConfig, DistillLoss, DistillObjective, DistillReport, Distiller, TeacherCache, agreement,
};
pub use dkd::{DkdConfig, DkdOutput, dkd_loss};
pub use embedding::{
    InfoNceConfig, NORM_EPS, cosine_embedding_loss, info_nce_loss, mse_embedding_loss,
};
pub use error::{DistillError, Result};
pub use feature::HintLoss;
pub use kd::{KdConfig, KdOutput, kd_loss};
pub use sequence::{
    Decay, EmbeddingObjective, EncoderOutput, FitReport, ObjectiveGrad, ObjectiveValue,
    SequenceDistillConfig, SequenceDistiller, SequenceEncoder, StepStats, TeacherTargets,
    WarmupSchedule, clip_grad_norm, gather_tokens, scatter_tokens,
};
pub use softmax::{kl_div, log_softmax_with_temperature, soft_targets, softmax_with_temperature};
