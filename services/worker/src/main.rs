//! `chat-worker`: reads the configuration from the environment and drains the streams until SIGTERM.

use anyhow::Context;
use chat_config::Config;
use chat_worker::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    chat_telemetry::init("chat-worker", config.log_format);
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped().await,
        Err(e) => Err(e),
    };
    // The last spans, if tracing is on.
    chat_telemetry::shutdown();
    result
}
