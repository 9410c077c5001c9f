//! `tandem keygen`.

use std::path::PathBuf;

use image_builder::release::keys;

/// Arguments of `tandem keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Key name: the files are <name>.key and <name>.pub (e.g. release-2026).
    name: String,
    /// Directory for the two files (created if needed).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
}

/// Writes a new signing key pair and says what to do with it.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let pair = keys::generate(&args.name, &args.out_dir)?;
    println!("new update signing key {} (id {})", args.name, pair.id);
    println!(
        "  private  {} (mode 0600: keep it secret, it signs releases)",
        pair.private_path.display()
    );
    println!(
        "  public   {} (list it in the image definition: [update] trusted-keys)",
        pair.public_path.display()
    );
    Ok(0)
}
