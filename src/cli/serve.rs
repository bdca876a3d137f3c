//! `ibex serve`: the REST API and search page over a data directory.

use std::io::Write;

use ibex::Result;

use super::args::ServerArgs;
use super::Context;

/// Arguments of `ibex serve`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: Args, context: &Context) -> Result<()> {
    serve(args.server.config(&context.device)?, "")
}

/// Serves `config` until Ctrl-C or SIGTERM, printing the address once the indexes are open (tests
/// and scripts wait for the `Serving ... at URL` line); `page_query` is appended to the search
/// page's address.
pub fn serve(config: ibex::web::ServerConfig, page_query: &str) -> Result<()> {
    let data_dir = config.data_dir.clone();
    let keys = !config.api_keys.is_empty();
    let page_query = page_query.to_string();
    ibex::web::serve_blocking(config, move |addr| {
        println!("Serving {} at http://{addr}/", data_dir.display());
        println!("Search page: http://{addr}/{page_query}");
        println!(
            "API: http://{addr}/v1/indexes (OpenAPI: http://{addr}/openapi.json){}",
            if keys {
                "; send an API key as Authorization: Bearer <key>"
            } else {
                ""
            }
        );
        println!("Press Ctrl-C to stop.");
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("ibex: stopped cleanly.");
    Ok(())
}
