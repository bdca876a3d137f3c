//! `ibex quickstart`: fetch the default model, index the sample corpus, run its example queries,
//! then serve.

use ibex::Result;

use super::args::ServerArgs;
use super::Context;

/// Arguments of `ibex quickstart`.
#[derive(clap::Args)]
pub struct Args {
    /// Stop after the example queries instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs the quickstart, then serves its index unless `--no-serve`.
pub fn run(args: Args, context: &Context) -> Result<()> {
    let config = args.server.config(&context.device)?;
    ibex::quickstart::run(&mut std::io::stdout(), &config.data_dir, context.device())?;
    if args.no_serve {
        return Ok(());
    }
    println!();
    super::serve::serve(config, &format!("?index={}", ibex::quickstart::INDEX_NAME))
}
