//! `netcompress`: compress safetensors checkpoints and reproduce classic compression results.
//!
//! Run `netcompress --help` for the commands; `netcompress demo` runs every experiment on the
//! embedded digits data and prints one table.

mod cli;
mod commands;
mod demo;
mod error;
mod experiments;
mod inspect;
mod plot;
mod progress;
mod sweep;

use std::process::ExitCode;

use clap::Parser;

/// On SIGINT or SIGTERM, removes every temporary file of an unfinished write (so no partial
/// output is left) and exits with `128 + signal`, as a shell reports a signal death.
fn clean_up_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            compress_checkpoint::interrupt_writes();
            eprintln!("error: interrupted by signal {sig}; no output was written");
            std::process::exit(128 + sig);
        }
    });
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    clean_up_on_signals();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
