//! The `phasegate` binary: hands its arguments to the library and exits with its status.

fn main() -> std::process::ExitCode {
    phasegate::cli::main()
}
