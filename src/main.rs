use clap::Parser;

fn main() {
    ign_edge::notices::init();
    let cli = ign_edge::cli::Cli::parse();
    if let Err(e) = ign_edge::cli::run(cli) {
        std::process::exit(ign_edge::cli::report_error(&e));
    }
}
