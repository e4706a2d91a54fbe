//! Training a student against a frozen teacher.

mod fit;
mod objective;

pub use fit::{DistillConfig, DistillReport, Distiller, agreement};
pub use objective::{DistillLoss, DistillObjective, TeacherCache};
