//! `stoke completions <shell>`.

use anyhow::Result;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for.
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> Result<()> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "stoke", &mut std::io::stdout());
    Ok(())
}
