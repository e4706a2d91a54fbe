//! Command-line definitions and dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use compress_checkpoint::{ClusterEncoder, ClusterOptions, LowrankEncoder, LowrankOptions};

use crate::commands::pipeline::EncoderArgs;
use crate::error::{CliError, Result};
use crate::experiments::{self, Ctx, DataSource};

/// Neural-network compression: pruning, distillation, quantization, efficient architectures,
/// dynamic computation.
#[derive(Debug, Parser)]
#[command(name = "netcompress", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists every tensor of a .safetensors file (or a sharded *.safetensors.index.json):
    /// name, dtype, shape, params, sparsity, min/max, mean |w|, and totals.
    Inspect {
        /// The checkpoint.
        file: PathBuf,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Runs a registered experiment (see --list).
    Experiment {
        /// Experiment name.
        name: Option<String>,
        /// List the registered experiments.
        #[arg(long)]
        list: bool,
        /// Directory of MNIST IDX files (default: the embedded digits).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Seed for initialisation and shuffles.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print the result as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Fast settings (as used by `demo`).
        #[arg(long)]
        fast: bool,
        /// Model directory of the transformer experiments (e.g. all-MiniLM-L6-v2).
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Sentences (one per line) replacing the held-back evaluation sentences.
        #[arg(long, value_name = "FILE")]
        eval_file: Option<PathBuf>,
        /// More training sentences (one per line) added to the shipped ones, e.g. the text
        /// `scripts/fetch-sentences.sh` fetches; lines equal to an evaluation sentence are dropped.
        #[arg(long, value_name = "FILE")]
        train_file: Option<PathBuf>,
        /// Directory the trained transformer models are saved into (model directories).
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
    },
    /// Quantizes float tensors to packed 2..8-bit integers with scales (and zero points).
    Quantize(crate::commands::quantize::QuantizeArgs),
    /// Restores a compressed checkpoint to dense float tensors with the original names and
    /// shapes.
    Dequantize(crate::commands::dequantize::DequantizeArgs),
    /// Prunes float tensors (magnitude per tensor or global, N:M, or whole rows) and stores
    /// them sparse.
    Prune(crate::commands::prune::PruneArgs),
    /// Clusters float tensors with k-means (2^bits shared values) and packs the indices,
    /// optionally Huffman-coded.
    Cluster(EncoderArgs<ClusterOptions>),
    /// Factorizes weights into two low-rank factors by truncated SVD (energy or rank).
    Lowrank(EncoderArgs<LowrankOptions>),
    /// Sweeps a technique's strength on the embedded digits (or MNIST) and reports (and
    /// plots, with --plot) accuracy against sparsity, bits, temperature or MACs.
    Sweep(crate::sweep::SweepArgs),
    /// Compares two checkpoints tensor by tensor: SQNR, relative error, cosine similarity.
    Diff(crate::commands::diff::DiffArgs),
    /// Sentence embeddings of a BERT model directory; with two or more texts, their
    /// cosine-similarity matrix.
    Embed(crate::commands::embed::EmbedArgs),
    /// Fidelity of a (compressed) model directory to its original on sentences: cosine,
    /// nearest-neighbour agreement, Spearman, size and time per sentence.
    Eval(crate::commands::eval::EvalArgs),
    /// Runs every experiment on the embedded digits (fast settings) and prints one table.
    Demo {
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Only experiments whose name contains this text.
        #[arg(long)]
        only: Option<String>,
        /// Print every report as JSON lines after the table.
        #[arg(long)]
        json: bool,
        /// Fail (exit 1) when an experiment states no `extra.targets` or one of them is false
        /// (what CI runs).
        #[arg(long)]
        check: bool,
    },
}

/// Runs the parsed command.
pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { file, json } => crate::inspect::run(&file, json),
        Command::Experiment {
            name,
            list,
            data,
            seed,
            json,
            fast,
            model,
            eval_file,
            train_file,
            save,
        } => {
            if list {
                for e in experiments::REGISTRY {
                    println!("{:<22} {}", e.name, e.about);
                }
                return Ok(());
            }
            let name = name
                .ok_or_else(|| CliError::Usage("experiment: give a NAME or --list".to_string()))?;
            let exp = experiments::find(&name)?;
            let ctx = Ctx {
                data: data.map_or(DataSource::Digits, DataSource::Mnist),
                seed,
                fast,
                progress: !json,
                models: experiments::ModelOpts {
                    model,
                    eval_file,
                    train_file,
                    save,
                },
            };
            let report = (exp.run)(&ctx)?;
            crate::demo::print_table(std::slice::from_ref(&report));
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Quantize(a) => crate::commands::quantize::run(&a),
        Command::Dequantize(a) => crate::commands::dequantize::run(&a),
        Command::Prune(a) => crate::commands::prune::run(&a),
        Command::Cluster(a) => a.run("cluster", ClusterEncoder::new),
        Command::Lowrank(a) => a.run("lowrank", LowrankEncoder::new),
        Command::Sweep(a) => crate::sweep::run(&a),
        Command::Diff(a) => crate::commands::diff::run(&a),
        Command::Embed(a) => crate::commands::embed::run(&a),
        Command::Eval(a) => crate::commands::eval::run(&a),
        Command::Demo {
            seed,
            only,
            json,
            check,
        } => crate::demo::run(seed, only.as_deref(), json, check),
    }
}
