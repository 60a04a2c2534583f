//! The `trailhub` binary: parse the command line and run it

// mimalloc: the ingest path allocates many small, short-lived values (JSON, terms); glibc's
// malloc spent about a fifth of the hub's CPU on them (perf, docs/PERFORMANCE.md)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trailhub::cli::main()
}
