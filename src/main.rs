//! The `hookcast` binary: hands the command line to `cli` and exits with its code.

fn main() {
    std::process::exit(hookcast::cli::main(std::env::args_os()));
}
