use crate::helpers::{error_code, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for body in [r#"{"username": "alice""#, "not json", r#"{"a":1} trailing"#] {
        let res = app
            .client
            .post(app.url("/api/v1/auth/register"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(error_code(&v), "INVALID_JSON");
    }
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .body(r#"{"login":"a","password":"b"}"#);
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let big =
        json!({"username": "alice", "email": "a@example.com", "password": "x".repeat(70 * 1024)});
    let (status, body) = app.post("/api/v1/auth/register", None, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn missing_or_invalid_fields_are_422_with_a_message_per_field() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "a b", "password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "VALIDATION");
    let fields = &body["error"]["fields"];
    assert!(fields["username"].is_string(), "{body}");
    assert_eq!(fields["email"], "is required");
    assert!(fields["password"].as_str().unwrap().contains("8"));

    // Well-formed JSON of the wrong type names the field.
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": 42, "email": "a@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["username"].is_string(), "{body}");

    let (status, _) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!(["not", "an", "object"]),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn invalid_uuids_in_paths_are_400() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for path in [
        "/api/v1/rooms/not-a-uuid",
        "/api/v1/rooms/123/messages",
        "/api/v1/users/' OR 1=1 --",
    ] {
        let (status, body) = app.get(path, Some(&alice.token)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_code(&body), "BAD_REQUEST");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_json_and_wrong_methods_405_json() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "NOT_FOUND");
    let (status, body) = app.delete("/api/v1/auth/login", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn sql_looking_strings_are_stored_and_returned_verbatim() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let name = "Robert'); DROP TABLE rooms;--";
    let description = "\" OR \"1\"=\"1 /* <script>alert(1)</script>";
    let (status, room) = app
        .post(
            "/api/v1/rooms",
            Some(&alice.token),
            json!({"name": name, "description": description}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(room["name"], name);
    assert_eq!(room["description"], description);
    let (_, page) = app
        .get("/api/v1/rooms/discover?q=DROP%20TABLE", Some(&alice.token))
        .await;
    assert_eq!(page["rooms"][0]["name"], name);
    let (_, page) = app
        .get("/api/v1/rooms/discover?q=%25", Some(&alice.token))
        .await;
    assert_eq!(page["total"], 0, "LIKE wildcards in the search are literal");
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"fullName": "x'; UPDATE users SET username='pwned"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, me) = app.get("/api/v1/auth/me", Some(&alice.token)).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["fullName"], "x'; UPDATE users SET username='pwned");
}

#[tokio::test]
async fn server_errors_reveal_nothing() {
    let app = spawn_app().await;
    app.register("alice").await;
    sqlx::query("DROP TABLE refresh_tokens")
        .execute(app.store.pool())
        .await
        .unwrap();
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "password-alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": {"code": "INTERNAL", "message": "internal error"}})
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_cors() {
    let app = spawn_app().await;
    let res = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/rooms"))
        .header("Origin", "http://example.test")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn health_ready_and_the_openapi_document_are_served() {
    let app = spawn_app().await;
    let (status, body) = app.get("/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = app.get("/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mysql"], "ok");
    assert_eq!(body["redis"], "ok");
    let (status, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/register",
        "/api/v1/rooms/{id}/messages",
        "/api/v1/rooms/{id}/members/{userId}",
        "/api/v1/messages/{id}",
        "/api/v1/rooms/{id}/read",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    for (path, method) in [
        ("/api/v1/rooms/{id}/messages", "get"),
        ("/api/v1/rooms/{id}/messages", "post"),
        ("/api/v1/messages/{id}", "patch"),
        ("/api/v1/messages/{id}", "delete"),
        ("/api/v1/rooms/{id}/read", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
    let res = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("/api/v1/openapi.json"));
}

#[tokio::test]
async fn ready_reports_an_unreachable_redis_and_authenticated_routes_fail_closed() {
    // A port nothing listens on: connections are refused at once.
    let app = crate::helpers::spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (status, body) = app.get("/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["redis"], "unreachable");
    assert_eq!(body["mysql"], "ok");
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on Redis");
    // Registration works without Redis (the rate limiter fails open) ...
    let alice = app.register("alice").await;
    // ... but token revocation cannot be checked, so authenticated routes answer 503, not 200.
    let (status, body) = app.get("/api/v1/auth/me", Some(&alice.token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "UNAVAILABLE");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "{id}");
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["x-request-id"],
        "client-chosen-42",
        "a caller's id is kept"
    );
}

#[tokio::test]
async fn oversized_login_fields_are_refused_before_any_lookup() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "a".repeat(255), "password": "whatever1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["login"].is_string(), "{body}");
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "p".repeat(1025)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["password"].is_string(), "{body}");
}
