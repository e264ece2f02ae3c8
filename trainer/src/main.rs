//! The `ign-train` binary: parse the command line and run it; exit 130 when training was
//! interrupted (its checkpoint saved), 2 on an error (one line).

use clap::Parser;

fn main() {
    ign_core::notices::init();
    let cli = ign_train::cli::Cli::parse();
    if let Err(e) = ign_train::cli::run(cli) {
        if let Some(i) = e.downcast_ref::<ign_train::train::Interrupted>() {
            eprintln!("{i}");
            std::process::exit(130);
        }
        std::process::exit(ign_train::cli::report_error(&e));
    }
}
