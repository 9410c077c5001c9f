//! `tandem serve`.

use std::io::Write;
use std::path::PathBuf;

use image_builder::serve::Server;

/// Arguments of `tandem serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The repository directory to serve.
    repo: PathBuf,
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Append one JSON line per request ({"path","range","status","bytes"}) to this file.
    #[arg(long)]
    log: Option<PathBuf>,
}

/// Serves until the process is interrupted (Ctrl-C, SIGTERM).
pub fn run(args: Args) -> anyhow::Result<u8> {
    let server = Server::bind(&args.repo, &args.listen, args.log.as_deref())?;
    let addr = server.local_addr()?;
    // Tests wait for this line: print it once listening, and flush it.
    println!(
        "tandem serve: serving {} on http://{addr}/",
        args.repo.display()
    );
    std::io::stdout().flush()?;
    image_builder::serve::exit_on_signals();
    server.run()?;
    Ok(0)
}
