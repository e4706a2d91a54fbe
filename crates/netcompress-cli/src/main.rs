//! `netcompress`: compress safetensors checkpoints and reproduce classic compression results.
//!
//! Run `netcompress --help` for the commands; `netcompress demo` runs every experiment on the
//! embedded digits data and prints one table.

mod cli;
mod commands;
mod decode;
mod demo;
mod error;
mod experiments;
mod format;
mod inspect;
mod plot;
mod progress;
mod safetensors_io;
mod select;
mod sweep;
mod writer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
