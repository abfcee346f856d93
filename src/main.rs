//! The `shardfeed` command-line tool: thin glue over the library crates.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => match cli::out::stdout_error() {
            // The work is done, but its report was lost (a full disk behind `> file`): an I/O
            // error. A closed pipe (`| head`) is not one.
            Some(e) => {
                cli::out::err_line(format_args!("error: writing to standard output: {e}"));
                ExitCode::from(2)
            }
            None => code,
        },
        Err(e) => {
            // Library errors say their cause in their message and do not repeat it as `source()`,
            // so the chain prints each cause once.
            cli::out::err_line(format_args!("error: {e:#}"));
            ExitCode::from(2)
        }
    }
}
