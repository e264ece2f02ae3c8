use clap::Parser;

fn main() {
    let cli = ign_edge::cli::Cli::parse();
    if let Err(e) = ign_edge::cli::run(cli) {
        std::process::exit(ign_edge::cli::report_error(&e));
    }
}
