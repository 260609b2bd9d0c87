//! `latchkey-control`: the control plane's command line (see `cli`).

use clap::Parser;
use latchkey_control::cli::{self, ADMIN_PASSWORD_VAR, Cli};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let password = std::env::var(ADMIN_PASSWORD_VAR).ok();
    let mut input = std::io::stdin().lock();
    // Not locked: `serve` logs to standard output from every thread.
    let mut out = std::io::stdout();
    cli::run(Cli::parse(), password, &mut input, &mut out).await
}
