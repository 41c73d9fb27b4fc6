//! `chat-api [serve|migrate|openapi]`: reads the configuration from the environment and runs.

use anyhow::Context;
use chat_api::Application;
use chat_config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    chat_telemetry::init("chat-api", config.log_format);
    let result = run(config).await;
    // The last spans, if tracing is on.
    chat_telemetry::shutdown();
    result
}

async fn run(config: Config) -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => Application::build(config).await?.run_until_stopped().await,
        Some("migrate") => {
            let store = chat_store::Store::connect(config.database_url.expose(), 2).await?;
            store.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some("openapi") => {
            println!("{}", chat_api::http::openapi().to_pretty_json()?);
            Ok(())
        }
        Some(other) => {
            anyhow::bail!("unknown command {other:?}; expected serve, migrate or openapi")
        }
    }
}
