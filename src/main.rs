use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = stevedore::cli::Cli::parse();
    stevedore::cli::run(
        cli,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}
