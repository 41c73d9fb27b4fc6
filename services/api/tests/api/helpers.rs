//! `spawn_app()`: the real API on port 0, on a fresh database and Redis prefix, with request helpers.

use chat_api::Application;
use chat_config::Config;
use chat_store::Store;
use chat_testkit::TestEnv;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub config: Config,
    pub env: TestEnv,
}

/// A registered user with a live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: Uuid,
    pub token: String,
    pub refresh: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let env = TestEnv::new()
        .await
        .expect("test database (run scripts/deps.sh)");
    let mut vars: HashMap<String, String> = env.vars().into_iter().collect();
    vars.insert("API_PORT".into(), "0".into());
    vars.insert("BIND_HOST".into(), "127.0.0.1".into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    let config = Config::from_map(&vars).expect("valid test config");
    let app = Application::build(config.clone())
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let store = env.store().await.expect("store");
    TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        config,
        env,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// A login attempt as seen through a proxy that appended `addr` to `X-Forwarded-For` (apps spawned
    /// with `TRUST_PROXY=true`); returns the status.
    pub async fn login_from(&self, addr: &str, login: &str, password: &str) -> StatusCode {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", addr)
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("request sent")
            .status()
    }

    /// Registers `name` (`name@example.com`, password `password-<name>`).
    pub async fn register(&self, name: &str) -> Session {
        let (status, body) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": name, "email": format!("{name}@example.com"), "password": format!("password-{name}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Session {
            id: body["user"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("user id"),
            token: body["accessToken"].as_str().expect("access token").into(),
            refresh: body["refreshToken"].as_str().expect("refresh token").into(),
        }
    }

    /// Creates a room and returns its JSON.
    pub async fn create_room(&self, owner: &Session, name: &str, private: bool) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/rooms",
                Some(&owner.token),
                json!({"name": name, "isPrivate": private}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Seeds `n` messages (seq 1..=n) from `sender` straight into MySQL.
    pub async fn seed_messages(&self, room: Uuid, sender: Uuid, n: i64) {
        let now = chrono::Utc::now();
        let msgs: Vec<_> = (1..=n)
            .map(|seq| chat_store::messages::NewMessage {
                id: Uuid::now_v7(),
                room_id: room,
                seq,
                sender_id: sender,
                kind: "text".into(),
                content: format!("message {seq}"),
                client_msg_id: None,
                created_at: now + chrono::Duration::milliseconds(seq),
            })
            .collect();
        self.store
            .insert_messages(&msgs)
            .await
            .expect("seed messages");
    }
}

pub fn id_of(v: &Value) -> Uuid {
    v["id"].as_str().and_then(|s| s.parse().ok()).expect("id")
}

/// Asserts the error body shape and returns its code.
pub fn error_code(body: &Value) -> &str {
    let e = &body["error"];
    assert!(e["message"].is_string(), "error body has a message: {body}");
    e["code"].as_str().expect("error body has a code")
}
