//! `chat-gateway`: reads the configuration from the environment and serves Socket.IO until SIGTERM.

use anyhow::Context;
use chat_config::Config;
use chat_gateway::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    chat_telemetry::init("chat-gateway", config.log_format);
    Application::build(config).await?.run_until_stopped().await
}
