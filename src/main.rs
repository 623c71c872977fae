/// mimalloc instead of glibc's malloc: fewer instructions per request (see Cargo.toml and
/// docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    backstop::cli::main()
}
