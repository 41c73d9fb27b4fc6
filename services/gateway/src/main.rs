//! `chat-gateway`: reads the configuration from the environment and serves Socket.IO until SIGTERM.

use anyhow::Context;
use chat_config::Config;
use chat_gateway::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    chat_telemetry::init("chat-gateway", config.log_format);
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped().await,
        Err(e) => Err(e),
    };
    // The last spans, if tracing is on.
    chat_telemetry::shutdown();
    result
}
