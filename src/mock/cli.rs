// placeholder until the mock branch merges
#[derive(clap::Args, Debug, Clone)]
pub struct MockArgs {}
pub async fn run(_args: MockArgs) -> std::io::Result<()> {
    Ok(())
}
