use crate::helpers::{error_code, spawn_app, spawn_app_with};
use chat_auth::{Claims, TokenKeys};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn register_returns_201_with_the_user_and_a_session_but_never_the_hash() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice", "email": "Alice@Example.com", "password": "password-alice", "fullName": "Alice A"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(
        body["user"]["email"], "alice@example.com",
        "e-mail is normalised"
    );
    assert_eq!(body["user"]["fullName"], "Alice A");
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert!(body["refreshToken"].as_str().is_some_and(|t| t.len() >= 40));
    let text = body.to_string();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );

    let row = app.store.user_by_login("alice").await.unwrap().unwrap();
    assert!(row
        .password_hash
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
}

#[tokio::test]
async fn login_works_with_email_or_username() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    for body in [
        json!({"email": "ALICE@example.com", "password": "password-alice"}),
        json!({"username": "alice", "password": "password-alice"}),
        json!({"login": "alice", "password": "password-alice"}),
    ] {
        let (status, res) = app.post("/api/v1/auth/login", None, body).await;
        assert_eq!(status, StatusCode::OK, "{res}");
        assert_eq!(res["user"]["id"], alice.id.to_string());
        let (status, me) = app
            .get("/api/v1/auth/me", res["accessToken"].as_str())
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["username"], "alice");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = spawn_app().await;
    app.register("alice").await;
    let (s1, b1) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "wrong-password"}),
        )
        .await;
    let (s2, b2) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "nobody", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(b1, b2, "no difference reveals whether the account exists");
    assert_eq!(error_code(&b1), "UNAUTHORIZED");
}

#[tokio::test]
async fn duplicate_email_or_username_is_409() {
    let app = spawn_app().await;
    app.register("alice").await;
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "ALICE", "email": "other@example.com", "password": "password-x"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "usernames are unique case-insensitively: {body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("username"));
    let (status, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"username": "alice2", "email": "alice@example.com", "password": "password-x"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"]["message"].as_str().unwrap().contains("email"));
}

#[tokio::test]
async fn me_requires_a_valid_token() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/auth/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "UNAUTHORIZED");
    let (status, _) = app.get("/api/v1/auth/me", Some("not.a.jwt")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn expired_forged_tampered_and_unsigned_tokens_are_401() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let keys = TokenKeys::new(
        app.config.jwt_secret.expose().as_bytes(),
        Duration::from_secs(900),
    );
    let now = chrono::Utc::now().timestamp();
    let expired = keys
        .encode(&Claims {
            sub: alice.id,
            jti: uuid::Uuid::now_v7(),
            iat: now - 3600,
            exp: now - 1800,
        })
        .unwrap();
    let forged = TokenKeys::new(
        b"someone-elses-secret-0123456789abcdef",
        Duration::from_secs(900),
    )
    .issue(alice.id, chrono::Utc::now())
    .unwrap()
    .0;
    let mut parts: Vec<String> = alice.token.split('.').map(String::from).collect();
    parts[1] = parts[1].chars().rev().collect();
    let tampered = parts.join(".");
    let header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64_url(&format!(
        r#"{{"sub":"{}","jti":"{}","iat":{now},"exp":{}}}"#,
        alice.id,
        uuid::Uuid::nil(),
        now + 600
    ));
    let unsigned = format!("{header}.{payload}.");
    for (what, token) in [
        ("expired", expired),
        ("forged", forged),
        ("tampered", tampered),
        ("alg none", unsigned),
    ] {
        let (status, body) = app.get("/api/v1/auth/me", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
}

fn base64_url(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let (status, first) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let second_token = first["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second_token, alice.refresh);
    let (status, _) = app
        .get("/api/v1/auth/me", first["accessToken"].as_str())
        .await;
    assert_eq!(status, StatusCode::OK);

    // Replaying the first token (a thief, or a lost race) revokes every token of the family.
    let (status, body) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": second_token}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the newer token of the family is revoked too"
    );

    // Another login is another family and still works.
    let (status, login) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "password-alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": login["refreshToken"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": "made-up"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app.post("/api/v1/auth/refresh", None, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_refresh_family() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let (status, _) = app
        .post(
            "/api/v1/auth/logout",
            Some(&alice.token),
            json!({"refreshToken": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.get("/api/v1/auth/me", Some(&alice.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": alice.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Logout without a body is fine too.
    let bob = app.register("bob").await;
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn login_attempts_are_limited_per_account() {
    let app = spawn_app_with(&[("LOGIN_ATTEMPTS_PER_ACCOUNT", "3")]).await;
    app.register("alice").await;
    for _ in 0..3 {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": "alice", "password": "nope-nope"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "alice", "password": "password-alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    // Other accounts are unaffected.
    app.register("bob").await;
    let (status, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "bob", "password": "password-bob"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address() {
    let app = spawn_app_with(&[("LOGIN_ATTEMPTS_PER_IP", "2")]).await;
    for who in ["a1", "a2"] {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": who, "password": "whatever1"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "a3", "password": "whatever1"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&body), "RATE_LIMITED");
}

#[tokio::test]
async fn the_api_rate_limit_answers_429_with_retry_after_per_user() {
    let app = spawn_app_with(&[("API_RATE_LIMIT_PER_MINUTE", "5")]).await;
    let alice = app.register("alice").await; // 1 anonymous request
    for _ in 0..5 {
        let (status, _) = app.get("/api/v1/auth/me", Some(&alice.token)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let res = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    // Health checks are not rate limited.
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn profile_updates_and_password_changes_need_the_current_password() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let (status, body) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"fullName": "Alice Liddell"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["fullName"], "Alice Liddell");

    let (status, body) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"password": "new-password-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["currentPassword"].is_string());
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"password": "new-password-1", "currentPassword": "wrong-one"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"password": "new-password-1", "currentPassword": "password-alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "new-password-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            "/api/v1/auth/refresh",
            None,
            json!({"refreshToken": alice.refresh}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a password change ends the other sessions"
    );

    app.register("bob").await;
    let (status, _) = app
        .patch(
            "/api/v1/users/me",
            Some(&alice.token),
            json!({"username": "bob"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn public_profiles_show_presence_and_last_seen() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let path = format!("/api/v1/users/{}", bob.id);
    let (status, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["username"], "bob");
    assert_eq!(body["online"], false);
    assert_eq!(body["status"], "offline");
    assert!(body.get("email").is_none(), "e-mail is private");

    // A connection entry (as a gateway writes it) counts while its gateway is alive.
    let bus = chat_bus::Bus::new(&app.env.redis_url, &app.env.redis_prefix).unwrap();
    let mut c = bus.conn().await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = deadpool_redis::redis::cmd("ZADD")
        .arg(bus.keys().presence_user(bob.id))
        .arg(now)
        .arg("gw-a|conn-1")
        .query_async(&mut *c)
        .await
        .unwrap();
    let (_, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(body["online"], false, "gateway gw-a is not alive");
    let _: () = deadpool_redis::redis::cmd("ZADD")
        .arg(bus.keys().gateways_alive())
        .arg(now + 60_000)
        .arg("gw-a")
        .query_async(&mut *c)
        .await
        .unwrap();
    let (_, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(body["online"], true);
    assert_eq!(body["status"], "online");
    // Its liveness expired (it died): offline, before anyone cleaned up its entries.
    let _: () = deadpool_redis::redis::cmd("ZADD")
        .arg(bus.keys().gateways_alive())
        .arg(now - 1)
        .arg("gw-a")
        .query_async(&mut *c)
        .await
        .unwrap();
    let (_, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(body["online"], false);

    let (status, _) = app
        .get(
            &format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            Some(&alice.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_client_address() {
    let app = spawn_app_with(&[("API_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        let (status, _) = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": "x"}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = app
        .post("/api/v1/auth/refresh", None, json!({"refreshToken": "x"}))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"]["retryAfterMs"]
        .as_u64()
        .is_some_and(|ms| ms > 0 && ms <= 60_000));
}

#[tokio::test]
async fn other_spellings_of_a_login_share_the_accounts_attempt_budget() {
    let app = spawn_app_with(&[
        ("LOGIN_ATTEMPTS_PER_ACCOUNT", "3"),
        ("LOGIN_ATTEMPTS_PER_IP", "1000"),
    ])
    .await;
    app.register("alice").await;
    // The case-insensitive collation finds `alice` for each of these; they must not get fresh budgets.
    for login in ["alice", "ALICE", "àlice"] {
        let (status, _) = app
            .post(
                "/api/v1/auth/login",
                None,
                json!({"login": login, "password": "wrong-password"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{login}");
    }
    let (status, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "Alice", "password": "password-alice"}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_proxy_the_client_address_is_the_right_most_forwarded_hop() {
    let app = spawn_app_with(&[("TRUST_PROXY", "true"), ("LOGIN_ATTEMPTS_PER_IP", "2")]).await;
    // A client varying the left-most entry still counts as 203.0.113.7, the address our proxy saw.
    for (spoofed, expected) in [
        ("1.1.1.1", StatusCode::UNAUTHORIZED),
        ("2.2.2.2", StatusCode::UNAUTHORIZED),
        ("3.3.3.3", StatusCode::TOO_MANY_REQUESTS),
    ] {
        let addr = format!("{spoofed}, 203.0.113.7");
        assert_eq!(
            app.login_from(&addr, "nobody", "whatever1").await,
            expected,
            "{spoofed}"
        );
    }
}

#[tokio::test]
async fn concurrent_logins_queue_for_the_hashing_slots_and_succeed() {
    let app = spawn_app_with(&[("PASSWORD_HASH_CONCURRENCY", "1")]).await;
    app.register("alice").await;
    let logins = (0..4).map(|_| {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"login": "alice", "password": "password-alice"}),
        )
    });
    for (status, body) in futures_join_all(logins).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::new();
    // Poll them together: join via a local set of pinned futures.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

#[tokio::test]
async fn guessing_from_one_address_does_not_lock_the_owner_out_from_another() {
    let app = spawn_app_with(&[("TRUST_PROXY", "true"), ("LOGIN_ATTEMPTS_PER_ACCOUNT", "3")]).await;
    app.register("alice").await;
    for _ in 0..3 {
        assert_eq!(
            app.login_from("198.51.100.1", "alice", "guess-guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_from("198.51.100.1", "alice", "guess-guess").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The owner, elsewhere, still gets in.
    assert_eq!(
        app.login_from("203.0.113.9", "alice", "password-alice")
            .await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_account_has_a_total_attempt_budget_across_addresses() {
    let app = spawn_app_with(&[
        ("TRUST_PROXY", "true"),
        ("LOGIN_ATTEMPTS_PER_ACCOUNT_TOTAL", "4"),
    ])
    .await;
    app.register("alice").await;
    for i in 1..=4 {
        let addr = format!("198.51.100.{i}");
        assert_eq!(
            app.login_from(&addr, "alice", "guess-guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_from("198.51.100.99", "alice", "password-alice")
            .await,
        StatusCode::TOO_MANY_REQUESTS
    );
}
