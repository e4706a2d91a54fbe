//! Progress bars (indicatif) hung on the training loop's hooks.

use compress_core::{Float, Layer};
use compress_nn::train::{EpochStats, TrainHooks};
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over epochs that shows the last loss and validation accuracy.
#[derive(Debug)]
pub(crate) struct EpochBar {
    bar: ProgressBar,
}

impl EpochBar {
    /// A bar for `epochs` epochs labelled `label`; hidden when `visible` is false.
    pub(crate) fn new(label: &str, epochs: usize, visible: bool) -> Self {
        let bar = if visible {
            ProgressBar::new(epochs as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>18} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Self { bar }
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl<F: Float> TrainHooks<F> for EpochBar {
    fn on_step(&mut self, _: usize, _: &mut dyn Layer<F>) -> compress_nn::Result<()> {
        Ok(())
    }

    fn on_epoch(&mut self, stats: &EpochStats) -> bool {
        self.bar.inc(1);
        let valid = stats
            .valid_accuracy
            .map_or(String::new(), |a| format!(" valid {:.2}%", a * 100.0));
        self.bar
            .set_message(format!("loss {:.4}{valid}", stats.train_loss));
        true
    }
}
