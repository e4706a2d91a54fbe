//! Early-exit networks (BranchyNet): stages with exit heads, joint training and batched
//! inference that skips the work of samples that have left.

mod infer;
mod net;
mod train;

pub use net::EarlyExitNet;
pub use train::{
    ExitDistill, ExitEpochStats, ExitTrainConfig, ExitTrainReport, joint_exit_loss,
    train_early_exit, train_exit_heads,
};
