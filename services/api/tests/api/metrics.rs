//! `/metrics` after real traffic: requests by route template and status, latency histograms by route,
//! and the MySQL and Redis errors that made requests fail.

use crate::helpers::{id_of, spawn_app, spawn_app_with, TestApp};
use reqwest::StatusCode;
use serde_json::json;

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    res.text().await.unwrap()
}

/// The value of the series `series` (name and labels exactly), if exposed.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status_after_real_traffic() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, "general", false).await;
    let room_id = id_of(&room);
    let (status, body) = app
        .post(
            &format!("/api/v1/rooms/{room_id}/messages"),
            Some(&alice.token),
            json!({"content": "hello metrics"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .get(&format!("/api/v1/rooms/{room_id}"), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    // Another room id: the same route, another status; an unknown path: no route at all.
    let (status, _) = app
        .get(
            &format!("/api/v1/rooms/{}", uuid::Uuid::now_v7()),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/no/such/thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let text = scrape(&app).await;
    for (series, want) in [
        (
            r#"chat_api_http_requests_total{route="/api/v1/auth/register",status="201"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_requests_total{route="/api/v1/rooms",status="201"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_requests_total{route="/api/v1/rooms/{id}/messages",status="201"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_requests_total{route="/api/v1/rooms/{id}",status="200"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_requests_total{route="/api/v1/rooms/{id}",status="404"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_requests_total{route="unmatched",status="404"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_request_duration_seconds_count{route="/api/v1/rooms/{id}/messages"}"#,
            1.0,
        ),
        (
            r#"chat_api_http_request_duration_seconds_bucket{route="/api/v1/rooms/{id}",le="+Inf"}"#,
            2.0,
        ),
        ("chat_api_mysql_errors_total", 0.0),
        ("chat_api_redis_errors_total", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(want), "{series} in\n{text}");
    }
    assert!(
        value(
            &text,
            r#"chat_api_http_request_duration_seconds_sum{route="/api/v1/rooms/{id}/messages"}"#
        )
        .is_some_and(|s| s > 0.0),
        "{text}"
    );
    // Never a raw path (ids would make the label set unbounded).
    assert!(!text.contains(&room_id.to_string()), "{text}");
    for name in [
        "chat_api_http_requests_total",
        "chat_api_http_request_duration_seconds",
        "chat_api_mysql_errors_total",
        "chat_api_redis_errors_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
    }
    // Scrapes count under their own route and are not rate limited.
    for _ in 0..3 {
        scrape(&app).await;
    }
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"chat_api_http_requests_total{route="/metrics",status="200"}"#
        ),
        Some(4.0),
        "{text}"
    );
}

#[tokio::test]
async fn mysql_and_redis_failures_are_counted() {
    // MySQL: a table gone makes listing rooms fail with 500.
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    sqlx::query("RENAME TABLE rooms TO rooms_gone")
        .execute(app.store.pool())
        .await
        .unwrap();
    let (status, _) = app.get("/api/v1/rooms", Some(&alice.token)).await;
    assert!(status.is_server_error(), "{status}");
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "chat_api_mysql_errors_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "chat_api_redis_errors_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"chat_api_http_requests_total{{route="/api/v1/rooms",status="{}"}}"#,
                status.as_u16()
            )
        ),
        Some(1.0),
        "{text}"
    );

    // Redis: nothing listens on port 1. An anonymous request skips the rate limit (counted) and then
    // needs no Redis; a signed-in one skips it too (counted) and fails closed on the revocation check
    // (counted).
    let app = spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (status, _) = app.get("/api/v1/rooms/discover", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "chat_api_redis_errors_total"),
        Some(1.0),
        "{text}"
    );
    let (status, _) = app.get("/api/v1/auth/me", Some(&alice.token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "chat_api_redis_errors_total"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"chat_api_http_requests_total{route="/api/v1/auth/me",status="503"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "chat_api_mysql_errors_total"),
        Some(0.0),
        "{text}"
    );
}
