//! `tandem config validate FILE [--json]`: a cloud-config checked on the
//! build host with the node's own parser (the `cloud-config` crate).

use std::io::Read;

/// Exit status when the file cannot be read (as for usage errors).
const CANNOT_READ: u8 = 2;

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
            let (label, text) = match read(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("tandem: cannot read {file}: {e}");
                    return Ok(CANNOT_READ);
                }
            };
            let v = cloud_config::validate(&text);
            print!("{}", v.report.render(&label, json));
            Ok(v.report.exit_code())
        }
    }
}

/// The file's name for messages and its text (`-`: standard input).
fn read(file: &str) -> std::io::Result<(String, String)> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(("<stdin>".to_string(), text))
    } else {
        Ok((file.to_string(), std::fs::read_to_string(file)?))
    }
}
