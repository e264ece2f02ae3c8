use clap::Parser;

fn main() {
    let cli = ign_train::cli::Cli::parse();
    if let Err(e) = ign_train::cli::run(cli) {
        std::process::exit(ign_edge::cli::report_error(&e));
    }
}
