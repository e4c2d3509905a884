//! The `phasegate` binary: hands its arguments to the library and exits with its status.
//!
//! Memory comes from mimalloc rather than the C library's allocator: a campaign allocates and
//! frees megabytes a batch (rendered messages, request bodies), and glibc's gave those pages back
//! to the kernel and faulted them in again each time (a tenth of a campaign's time, by `perf`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    phasegate::cli::main()
}
