//! Distillation of sequence (embedding) models: a [`SequenceEncoder`] contract, the
//! weighted [`EmbeddingObjective`] (cosine, MSE, InfoNCE, hidden-state hints) and the
//! [`SequenceDistiller`] training loop (AdamW, warm-up + decay, clipping, padded
//! length-bucketed batches, teacher outputs cached once).

mod encoder;
mod objective;
mod schedule;
mod train;

pub use encoder::{EncoderOutput, SequenceEncoder, gather_tokens, scatter_tokens};
pub use objective::{EmbeddingObjective, ObjectiveGrad, ObjectiveValue, TeacherTargets};
pub use schedule::{Decay, WarmupSchedule, clip_grad_norm};
pub use train::{FitReport, SequenceDistillConfig, SequenceDistiller, StepStats};
