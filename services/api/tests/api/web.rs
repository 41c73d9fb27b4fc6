//! The web client's routes: its files from WEB_DIR, `/config.json`, `/invite/{code}`, the page's
//! Content-Security-Policy, and JSON 404s for every path that is neither a route nor a file.

use crate::helpers::spawn_app_with;
use reqwest::StatusCode;
use serde_json::Value;

/// A WEB_DIR with a page and one asset, removed on drop.
struct WebDir(std::path::PathBuf);

impl WebDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("chat-web-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><title>Chat</title>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "console.log(1)").unwrap();
        Self(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for WebDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn serves_the_client_its_settings_and_json_404s() {
    let dir = WebDir::new();
    let app = spawn_app_with(&[
        ("WEB_DIR", dir.path()),
        (
            "WEB_GATEWAY_URL",
            "http://localhost:3000,http://localhost:3001",
        ),
    ])
    .await;
    for path in ["/", "/invite/some-code"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("ws://localhost:3001"), "{csp}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(res.text().await.unwrap().contains("<title>Chat</title>"));
    }
    let res = app
        .client
        .get(app.url("/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert_eq!(res.headers()["cache-control"], "no-cache");

    let (status, body) = app.get("/config.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["apiBase"], "/api/v1");
    assert_eq!(
        body["gatewayUrls"],
        serde_json::json!(["http://localhost:3000", "http://localhost:3001"])
    );

    // The API's routes keep precedence; unknown paths (and other methods) get the JSON 404.
    let (status, body) = app.get("/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    for path in ["/nope", "/assets/nope.js", "/api/v1/nope", "/../Cargo.toml"] {
        let (status, body) = app.get(path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}");
    }
    let (status, body) = app
        .post("/assets/app.js", None, serde_json::json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    // An API route without a token is still the API's 401, not a file.
    let (status, _) = app.get("/api/v1/rooms", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_build_the_page_says_how_to_make_one() {
    let missing = std::env::temp_dir().join(format!("chat-web-missing-{}", uuid::Uuid::new_v4()));
    let app = spawn_app_with(&[
        ("WEB_DIR", missing.to_str().unwrap()),
        ("WEB_GATEWAY_URL", ""),
    ])
    .await;
    let (status, body) = app.get("/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not built"), "{message}");
    let (_, body) = app.get("/config.json", None).await;
    assert_eq!(body["gatewayUrls"], Value::Array(vec![]));
    // Disabled outright.
    let app = spawn_app_with(&[("WEB_DIR", "")]).await;
    let (status, body) = app.get("/", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));
}
