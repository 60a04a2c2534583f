//! The `trailhub` binary: parse the command line and run it

// mimalloc: the ingest path allocates many small, short-lived values (JSON, terms); glibc's
// malloc spent about a fifth of the hub's CPU on them (perf, docs/PERFORMANCE.md)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (include/mimalloc.h), which the -sys
/// crate does not name.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS after 100 ms instead of mimalloc 3's default 1 s: under a
    // sustained ingest a second's worth of freed request buffers was held on to (1M events:
    // peak RSS 498 -> 353 MiB, with no measurable CPU cost; 10 ms gave 322 MiB for 9% more CPU).
    // SAFETY: sets a process-wide option before any thread is started; takes no pointers.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 100) };
    trailhub::cli::main()
}
