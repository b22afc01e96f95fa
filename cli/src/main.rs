//! The `waterline` binary. See `waterline --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    waterline::telemetry::init_logging();
    let cli = waterline::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(waterline::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", waterline::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
