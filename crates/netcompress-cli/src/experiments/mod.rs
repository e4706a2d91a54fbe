//! The experiment registry behind `netcompress experiment` and `netcompress demo`.
//!
//! Each technique adds a file here with `pub(crate) fn run_<name>(ctx: &Ctx) -> Result<Report>`
//! functions and registers them in [`REGISTRY`].

mod arch;
pub(crate) mod baseline;
mod binary;
mod cluster;
pub(crate) mod controls;
mod distill;
mod distill_minilm;
mod dynamic;
mod prune;
mod quant;
mod quant_int8;

use std::path::PathBuf;

use compress_core::{Layer, ModelStats, Precision};
use compress_nn::Dataset;
use serde::Serialize;
use serde_json::Value;

use crate::error::{CliError, Result};

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataSource {
    /// The embedded UCI digits (8x8).
    Digits,
    /// MNIST IDX files in this directory (28x28).
    Mnist(PathBuf),
}

/// Everything an experiment needs to run.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The data set.
    pub(crate) data: DataSource,
    /// Seed for initialisation and shuffles.
    pub(crate) seed: u64,
    /// Fast settings (used by `demo`): fewer epochs/seeds, same targets where possible.
    pub(crate) fast: bool,
    /// Show progress bars on stderr.
    pub(crate) progress: bool,
    /// Model directories and sentence files of the transformer experiments.
    pub(crate) models: ModelOpts,
}

/// Options of the experiments on a transformer model directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelOpts {
    /// The model directory (`--model`).
    pub(crate) model: Option<PathBuf>,
    /// Sentences replacing the held-back evaluation set (`--eval-file`).
    pub(crate) eval_file: Option<PathBuf>,
    /// Training sentences added to the shipped ones (`--train-file`).
    pub(crate) train_file: Option<PathBuf>,
    /// Where trained models are written as model directories (`--save`).
    pub(crate) save: Option<PathBuf>,
}

impl Ctx {
    /// `"digits"` or `"mnist"`.
    pub(crate) fn data_name(&self) -> &'static str {
        match self.data {
            DataSource::Digits => "digits",
            DataSource::Mnist(_) => "mnist",
        }
    }

    /// `(train, test)` with flat samples (`[N, 64]` or `[N, 784]`), pixels in `[0, 1]`.
    pub(crate) fn load_flat(&self) -> Result<(Dataset<f32>, Dataset<f32>)> {
        match &self.data {
            DataSource::Digits => Ok(compress_nn::data::digits::<f32>()?),
            DataSource::Mnist(dir) => Ok(compress_nn::data::mnist::load_sized::<f32>(dir, 28, 28)?),
        }
    }

    /// `(train, test)` as images `[N, 1, H, W]`.
    pub(crate) fn load_images(&self) -> Result<(Dataset<f32>, Dataset<f32>)> {
        let (tr, te) = self.load_flat()?;
        let side = self.image_side();
        Ok((
            tr.reshaped(&[1, side, side])?,
            te.reshaped(&[1, side, side])?,
        ))
    }

    /// 8 for digits, 28 for MNIST.
    pub(crate) fn image_side(&self) -> usize {
        match self.data {
            DataSource::Digits => 8,
            DataSource::Mnist(_) => 28,
        }
    }

    /// Flat input width: 64 or 784.
    pub(crate) fn input_dim(&self) -> usize {
        self.image_side() * self.image_side()
    }

    /// Epochs to use: `full` normally, `fast` under `demo`.
    pub(crate) fn epochs(&self, full: usize, fast: usize) -> usize {
        if self.fast { fast } else { full }
    }
}

/// Accuracy and size of one model, as the `--json` contract spells it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub(crate) struct Metrics {
    /// Test accuracy in `[0, 1]`.
    pub(crate) accuracy: f64,
    /// Parameters.
    pub(crate) params: usize,
    /// Non-zero parameters.
    pub(crate) nonzero: usize,
    /// Bytes of weight storage in the format the experiment produces.
    pub(crate) bytes: usize,
    /// Multiply-accumulates per sample.
    pub(crate) macs: u64,
}

impl Metrics {
    /// Metrics of a dense f32 model: accuracy given, bytes = 4 per parameter, MACs from
    /// `cost(input_shape)`.
    pub(crate) fn dense_f32<L: Layer<f32> + ?Sized>(
        model: &L,
        input_shape: &[usize],
        accuracy: f64,
    ) -> Result<Self> {
        let stats = ModelStats::of(model);
        let cost = model.cost(input_shape)?;
        Ok(Self {
            accuracy,
            params: stats.params,
            nonzero: stats.nonzero,
            bytes: stats.bytes(Precision::F32),
            macs: cost.macs,
        })
    }
}

/// One experiment's result: the `--json` contract.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Registry name.
    pub(crate) experiment: String,
    /// `"digits"` or `"mnist"`.
    pub(crate) data: String,
    /// Seed used.
    pub(crate) seed: u64,
    /// The uncompressed reference.
    pub(crate) baseline: Metrics,
    /// The compressed model.
    pub(crate) compressed: Metrics,
    /// The f32 baseline fine-tuned exactly like the compressed model (experiments that
    /// fine-tune); see [`controls`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) control: Option<Metrics>,
    /// Experiment-specific details.
    pub(crate) extra: Value,
}

impl Report {
    /// A report for `ctx`.
    pub(crate) fn new(
        name: &str,
        ctx: &Ctx,
        baseline: Metrics,
        compressed: Metrics,
        extra: Value,
    ) -> Self {
        Self {
            experiment: name.to_string(),
            data: ctx.data_name().to_string(),
            seed: ctx.seed,
            baseline,
            compressed,
            control: None,
            extra,
        }
    }
}

/// A registered experiment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Experiment {
    /// Name on the command line.
    pub(crate) name: &'static str,
    /// One line for `--list`.
    pub(crate) about: &'static str,
    /// Runs it.
    pub(crate) run: fn(&Ctx) -> Result<Report>,
}

/// Every experiment, in `demo` order.
pub(crate) const REGISTRY: &[Experiment] = &[
    Experiment {
        name: "baseline",
        about: "reference MLP (and small CNN in extra), dense f32",
        run: baseline::run,
    },
    // technique experiments are registered below this line
    Experiment {
        name: "distill",
        about: "Hinton KD: 1200-1200 dropout teacher into a small MLP, alone vs distilled over seeds",
        run: distill::run,
    },
    Experiment {
        name: "distill-sweep",
        about: "distilled student accuracy over temperature T in {1, 2, 4, 8, 20}",
        run: distill::run_sweep,
    },
    Experiment {
        name: "distill-minilm",
        about: "all-MiniLM-L6-v2 (--model DIR) into 3- and 2-layer students: objective ablation, fidelity, speed-up (not in demo)",
        run: distill_minilm::run,
    },
    Experiment {
        name: "prune-magnitude",
        about: "global magnitude pruning to 90% with fine-tuning, stored as CSR (Han et al. 2015)",
        run: prune::run_magnitude,
    },
    Experiment {
        name: "prune-structured",
        about: "remove half of the hidden neurons physically (APoZ, iterative, fine-tuned)",
        run: prune::run_structured,
    },
    Experiment {
        name: "lottery-ticket",
        about: "8 rounds of 20% IMP with rewinding vs random re-init (Frankle & Carbin 2019)",
        run: prune::run_lottery,
    },
    Experiment {
        name: "prune-nm",
        about: "2:4 semi-structured sparsity with fine-tuning",
        run: prune::run_nm,
    },
    Experiment {
        name: "cluster",
        about: "k-means weight sharing, 16 clusters (4-bit) per layer, centroid fine-tuning",
        run: cluster::run_cluster,
    },
    Experiment {
        name: "deep-compression",
        about: "Deep Compression: prune ~92%, 5-bit trained clustering, Huffman (Han Table 1)",
        run: cluster::run_deep_compression,
    },
    Experiment {
        name: "binaryconnect",
        about: "BinaryConnect MLP (deterministic, stochastic, XNOR scaling), 1-bit weights",
        run: binary::run_binaryconnect,
    },
    Experiment {
        name: "ternary",
        about: "Ternary Weight Networks (TWN) fine-tuning, 2-bit weights",
        run: binary::run_ternary,
    },
    Experiment {
        name: "early-exit",
        about: "BranchyNet-style 3-exit MLP, thresholds calibrated on validation; measured avg MACs",
        run: dynamic::run_early_exit,
    },
    Experiment {
        name: "slimmable",
        about: "one slimmable MLP at widths 0.25/0.5/0.75/1.0 (sandwich rule) vs twins trained alone",
        run: dynamic::run_slimmable,
    },
    Experiment {
        name: "dynamic-budget",
        about: "early-exit depth chosen by battery level 0.25/0.5/0.75/1.0 (per sample and on average)",
        run: dynamic::run_dynamic_budget,
    },
    Experiment {
        name: "depthwise",
        about: "small CNN with standard vs depthwise separable 3x3 convs (MobileNet cost ratio 1/N + 1/K^2)",
        run: arch::run_depthwise,
    },
    Experiment {
        name: "mobilenet",
        about: "MobileNet v1 (small) at width 1.0 and 0.5, and with Ghost modules (ratio 2)",
        run: arch::run_mobilenet,
    },
    Experiment {
        name: "lowrank",
        about: "reference MLP's two largest layers by truncated SVD to 90% energy, fine-tuned",
        run: arch::run_lowrank,
    },
    Experiment {
        name: "quant-ptq",
        about: "post-training quantization of the MLP and CNN: int8 per-tensor/channel, int4 g32, int2 g16",
        run: quant::run_ptq,
    },
    Experiment {
        name: "quant-qat",
        about: "quantization-aware fine-tuning (LSQ and min-max ranges) at 4 and 2 bits vs PTQ",
        run: quant::run_qat,
    },
    Experiment {
        name: "quant-int8-inference",
        about: "the MLP (and CNN) end to end through QLinear / QConv2d: agreement and latency",
        run: quant_int8::run_int8_inference,
    },
];

/// Experiments `demo` skips: they need a model directory and run for minutes.
pub(crate) const NOT_IN_DEMO: &[&str] = &["distill-minilm"];

/// Looks an experiment up by name.
pub(crate) fn find(name: &str) -> Result<&'static Experiment> {
    REGISTRY.iter().find(|e| e.name == name).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown experiment `{name}`; known: {}",
            REGISTRY
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Test accuracy of a model on a data set (eval mode, batches of 512).
pub(crate) fn accuracy_of(model: &mut dyn Layer<f32>, data: &Dataset<f32>) -> Result<f64> {
    Ok(compress_nn::train::evaluate(model, data, 512)?)
}
