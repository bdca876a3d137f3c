//! The `ibex` command line: parses arguments and calls the library; it holds no logic of its own.
//! Each command is a module of [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// candle allocates large temporaries on every layer; glibc's allocator returns them to the
/// system and page-faults them back in each time (a third of the embedding time went to the
/// kernel), while mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match cli::Cli::parse().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
