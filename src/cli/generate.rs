//! Shell completions (`completions bash|zsh|fish|…`) and the man page (hidden `manpage`), both
//! generated from the clap definition, so they never drift from the real options. The Debian
//! package ships them (`scripts/package-deb.sh`).

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;

use super::Cli;

/// Prints the completion script for `shell` on standard output.
pub(super) fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "directory-connector", &mut out);
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(0)
}

/// Prints the man page (roff) on standard output.
pub(super) fn manpage() -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .context("rendering the man page")?;
    std::io::stdout()
        .lock()
        .write_all(&out)
        .context("writing the man page")?;
    Ok(0)
}
