//! `latchkey-bench`: load scenarios against a running Latchkey, each racing a
//! reference in the same run. Scenarios arrive with the issues that build
//! what they measure; the snapshot micro-benchmarks live in
//! `shared/benches` (criterion).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-bench",
    version,
    about = "Latchkey load scenarios (verify, ceiling, baseline-postgres, propagation, ingest)",
    long_about = "Latchkey load scenarios. None is available in this build yet: they arrive with the edge and link \
                  issues. For the snapshot micro-benchmarks run `cargo bench -p latchkey-shared --bench snapshot`."
)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!("no scenario is available in this build yet; see `latchkey-bench --help`");
    std::process::exit(2);
}
