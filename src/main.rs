use clap::Parser;

fn main() {
    // Before any thread and tract's first dispatch: tract reads fp16 support from
    // /proc/cpuinfo, which an emulator can get wrong (see cpu_has_fp16).
    if let Some(isa) = ign_edge::backend::cpu::steer_tract_fp16() {
        std::env::set_var("TRACT_CPU_ISA", isa);
    }
    ign_edge::notices::init();
    let cli = ign_edge::cli::Cli::parse();
    if let Err(e) = ign_edge::cli::run(cli) {
        std::process::exit(ign_edge::cli::report_error(&e));
    }
}
