//! `tandem cluster …` and `tandem lock …`: the node's `tandemctl cluster`
//! and `tandemctl lock`, from an operator's machine (`--etcd` needed).

/// Arguments: everything after `cluster` or `lock`, as `tandemctl` takes them.
#[derive(clap::Args, Debug)]
#[command(after_help = agent::cli::USAGE)]
pub struct Args {
    /// The command and its options (see below), e.g. `status --etcd http://10.0.0.5:2379 --json`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

/// Runs `<what> <words…>` (`what` is `cluster` or `lock`).
pub fn run(what: &str, args: Args) -> anyhow::Result<u8> {
    let mut all = vec![what];
    all.extend(args.words.iter().map(String::as_str));
    Ok(agent::cli::run(&all, &agent::cli::Defaults::default())?)
}
