//! The `trailhub` binary: parse the command line and run it

fn main() -> std::process::ExitCode {
    trailhub::cli::main()
}
