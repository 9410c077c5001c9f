//! `tandem config validate FILE [--json]`: a cloud-config checked on the
//! build host with the node's own parser (the `cloud-config` crate).

/// Arguments of `tandem config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Check a cloud-config: errors and warnings with line and column.
    #[command(
        after_help = "Exit status: 0 valid (warnings allowed), 1 invalid, 2 the file cannot be read or usage error. See docs/provisioning.md."
    )]
    Validate {
        /// The cloud-config (user-data) file; `-` for standard input.
        file: String,
        /// Print an object with `valid`, `errors`, `warnings`, `diagnostics`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `tandem config …`; returns the exit status.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Validate { file, json } => {
            Ok(cloud_config::command::validate_file("tandem", &file, json))
        }
    }
}
