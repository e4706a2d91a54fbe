//! Command-line definitions and dispatch.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    },
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
        } => {
            if list {
                for e in experiments::REGISTRY {
                    println!("{:<22} {}", e.name, e.about);
                }
                return Ok(());
            }
            let name = name.ok_or_else(|| {
                CliError::Usage("experiment: give a NAME or --list".to_string())
            })?;
            let exp = experiments::find(&name)?;
            let ctx = Ctx {
                data: data.map_or(DataSource::Digits, DataSource::Mnist),
                seed,
                fast,
                progress: !json,
            };
            let report = (exp.run)(&ctx)?;
            crate::demo::print_table(std::slice::from_ref(&report));
            if json {
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(())
        }
        Command::Demo { seed, only, json } => crate::demo::run(seed, only.as_deref(), json),
    }
}
