//! Slimmable networks: layers that run on their first `ceil(w * C)` channels, switchable
//! batch norm, sandwich-rule training, batch-norm recalibration and routing over widths.

mod conv;
mod linear;
mod net;
mod norm;
mod route;
mod train;
mod width;

pub use conv::SlimmableConv2d;
pub use linear::SlimmableLinear;
pub use net::{SlimLayer, SlimmableNet};
pub use norm::SwitchableBatchNorm;
pub use train::{SandwichConfig, SandwichEpoch, SandwichReport, recalibrate_bn, train_sandwich};
pub use width::{Slimmable, active_channels, check_width};
