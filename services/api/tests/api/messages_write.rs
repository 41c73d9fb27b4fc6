//! Sending, editing, deleting and marking read over REST (the room path shared with the gateway), and
//! the control messages membership changes publish. No persistence worker runs here: everything a
//! test reads back comes through the read-your-writes history.

use crate::helpers::{error_code, id_of, spawn_app, spawn_app_with, Session, TestApp};
use chat_bus::Keys;
use chat_realtime::RoomKeys;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn messages_path(room: Uuid) -> String {
    format!("/api/v1/rooms/{room}/messages")
}

async fn send(app: &TestApp, who: &Session, room: Uuid, body: Value) -> (StatusCode, Value) {
    app.post(&messages_path(room), Some(&who.token), body).await
}

/// Sends `content` and returns the message.
async fn sent(app: &TestApp, who: &Session, room: Uuid, content: &str) -> Value {
    let (status, body) = send(app, who, room, json!({ "content": content })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["message"].clone()
}

async fn history(app: &TestApp, who: &Session, room: Uuid) -> Vec<Value> {
    let (status, page) = app.get(&messages_path(room), Some(&who.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"].as_array().unwrap().clone()
}

async fn join(app: &TestApp, who: &Session, room: Uuid) {
    let (status, body) = app
        .post(
            &format!("/api/v1/rooms/{room}/join"),
            Some(&who.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A subscriber on this app's Redis, subscribed to `channels`.
async fn subscribe(app: &TestApp, channels: &[String]) -> chat_testkit::Subscription {
    app.env.subscribe(channels).await.unwrap()
}

/// The next message on `ps`, as (channel, JSON).
async fn next_msg(ps: &mut chat_testkit::Subscription) -> (String, Value) {
    let (channel, text) = ps
        .next_within(Duration::from_secs(5))
        .await
        .expect("a published message within 5 s");
    (channel, serde_json::from_str(&text).unwrap())
}

fn control_channel(app: &TestApp) -> String {
    format!("{}:v1:ctl", app.env.redis_prefix)
}

fn room_channel(app: &TestApp, room: Uuid) -> String {
    RoomKeys::new(&Keys::new(&app.env.redis_prefix), room, app.config.shards).channel()
}

#[tokio::test]
async fn a_sent_message_is_in_the_history_at_once_and_on_the_room_channel() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = id_of(&app.create_room(&alice, "Chat", false).await);
    let mut ps = subscribe(&app, &[room_channel(&app, room)]).await;

    let (status, body) = send(&app, &alice, room, json!({"content": "hello over REST"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["duplicate"], false);
    let m = &body["message"];
    assert_eq!(m["roomId"], room.to_string());
    assert_eq!(m["seq"], 1);
    assert_eq!(m["senderId"], alice.id.to_string());
    assert_eq!(m["type"], "text");
    assert_eq!(m["content"], "hello over REST");
    assert!(m["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert!(m["createdAt"].is_string());
    assert!(m.get("clientMsgId").is_none());

    // Live sockets get it exactly as REST answered it.
    let (_, ev) = next_msg(&mut ps).await;
    assert_eq!(ev["e"], "receive_message");
    assert_eq!(&ev["d"], m);

    let (status, body) = send(
        &app,
        &alice,
        room,
        json!({"content": "a picture", "type": "image", "clientMsgId": "c-42"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["message"].clone();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["type"], "image");
    assert_eq!(second["clientMsgId"], "c-42");

    // A retry answers 200 with the original; nothing new is sent.
    let (status, body) = send(
        &app,
        &alice,
        room,
        json!({"content": "a picture (again)", "type": "image", "clientMsgId": "c-42"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);
    assert_eq!(body["message"], second);

    // No worker runs in these tests: the history has them anyway.
    let msgs = history(&app, &alice, room).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(&msgs[0], m);
    assert_eq!(msgs[1], second);
}

#[tokio::test]
async fn sending_checks_its_input_and_membership() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = id_of(&app.create_room(&alice, "Open", false).await);
    let secret = id_of(&app.create_room(&alice, "Secret", true).await);

    for (body, field) in [
        (json!({}), "content"),
        (json!({"content": ""}), "content"),
        (json!({"content": "   \n\t"}), "content"),
        (json!({"content": "x".repeat(4001)}), "content"),
        (json!({"content": 5}), "content"),
        (json!({"content": null}), "content"),
        (json!({"content": ["a"]}), "content"),
        (json!({"content": "hi", "type": "video"}), "type"),
        (json!({"content": "hi", "type": 3}), "type"),
        (json!({"content": "hi", "clientMsgId": ""}), "clientMsgId"),
        (
            json!({"content": "hi", "clientMsgId": "x".repeat(65)}),
            "clientMsgId",
        ),
        (
            json!({"content": "hi", "clientMsgId": "has space"}),
            "clientMsgId",
        ),
        (json!({"content": "hi", "clientMsgId": 7}), "clientMsgId"),
    ] {
        let (status, res) = send(&app, &alice, room, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {res}");
        assert_eq!(error_code(&res), "VALIDATION");
        assert!(
            res["error"]["fields"][field].is_string(),
            "{field} named for {body}: {res}"
        );
    }
    // Every failing field at once.
    let (_, res) = send(&app, &alice, room, json!({"content": " ", "type": "x"})).await;
    assert!(
        res["error"]["fields"]["content"].is_string() && res["error"]["fields"]["type"].is_string()
    );

    let (status, _) = app
        .post(
            "/api/v1/rooms/not-a-uuid/messages",
            Some(&alice.token),
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "invalid ids in paths are 400"
    );
    let (status, res) = send(&app, &alice, Uuid::now_v7(), json!({"content": "hi"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{res}");
    let (status, res) = send(&app, &bob, room, json!({"content": "hi"})).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a public room needs joining first: {res}"
    );
    assert_eq!(error_code(&res), "FORBIDDEN");
    let (status, res) = send(&app, &bob, secret, json!({"content": "hi"})).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a private room stays invisible: {res}"
    );
    let (status, _) = app
        .post(&messages_path(room), None, json!({"content": "hi"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = app
        .client
        .post(app.url(&messages_path(room)))
        .bearer_auth(&alice.token)
        .header("Content-Type", "application/json")
        .body("{\"content\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // The longest content is fine; nothing refused above was sent.
    let long = sent(&app, &alice, room, &"é".repeat(4000)).await;
    assert_eq!(long["seq"], 1);
    assert_eq!(history(&app, &alice, room).await.len(), 1);
}

#[tokio::test]
async fn the_sixth_message_in_the_window_is_429_with_retry_after() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = id_of(&app.create_room(&alice, "Fast", false).await);
    for i in 0..5 {
        sent(&app, &alice, room, &format!("m{i}")).await;
    }
    let res = app
        .client
        .post(app.url(&messages_path(room)))
        .bearer_auth(&alice.token)
        .json(&json!({"content": "one too many"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let header: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&header), "{header}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    let ms = body["error"]["retryAfterMs"].as_u64().unwrap();
    assert!((1..=10_000).contains(&ms), "{ms}");
    assert_eq!(body["error"]["retryAfter"].as_u64(), Some(header));
    assert_eq!(history(&app, &alice, room).await.len(), 5);
}

#[tokio::test]
async fn the_message_rate_limit_is_configurable() {
    let app = spawn_app_with(&[
        ("MESSAGE_RATE_LIMIT", "2"),
        ("MESSAGE_RATE_WINDOW_MS", "60000"),
    ])
    .await;
    let alice = app.register("alice").await;
    let room = id_of(&app.create_room(&alice, "Slow", false).await);
    sent(&app, &alice, room, "1").await;
    sent(&app, &alice, room, "2").await;
    let (status, body) = send(&app, &alice, room, json!({"content": "3"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"]["retryAfterMs"].as_u64().unwrap() > 10_000);
}

#[tokio::test]
async fn the_sender_edits_and_the_sender_or_an_admin_deletes() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let eve = app.register("eve").await;
    let room = id_of(&app.create_room(&alice, "Room", false).await);
    join(&app, &bob, room).await;
    join(&app, &carol, room).await;
    let bobs = sent(&app, &bob, room, "bob's words").await;
    let id = bobs["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/messages/{id}");

    // Edit: the sender only.
    let (status, body) = app
        .patch(
            &path,
            Some(&bob.token),
            json!({"content": "bob's better words"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], id);
    assert_eq!(body["roomId"], room.to_string());
    assert_eq!(body["seq"], 1);
    assert_eq!(body["content"], "bob's better words");
    assert!(body["editedAt"].is_string());
    let msgs = history(&app, &alice, room).await;
    assert_eq!(msgs[0]["content"], "bob's better words");
    assert_eq!(msgs[0]["editedAt"], body["editedAt"]);

    for who in [&alice, &carol] {
        let (status, res) = app
            .patch(&path, Some(&who.token), json!({"content": "not yours"}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{res}");
        assert_eq!(error_code(&res), "FORBIDDEN");
    }
    let (status, res) = app
        .patch(&path, Some(&eve.token), json!({"content": "outsider"}))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "non-members learn nothing: {res}"
    );
    let (status, _) = app
        .patch(
            &format!("/api/v1/messages/{}", Uuid::now_v7()),
            Some(&bob.token),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .patch(
            "/api/v1/messages/42",
            Some(&bob.token),
            json!({"content": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for body in [
        json!({}),
        json!({"content": " "}),
        json!({"content": "x".repeat(4001)}),
        json!({"content": 1}),
    ] {
        let (status, res) = app.patch(&path, Some(&bob.token), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {res}");
        assert!(res["error"]["fields"]["content"].is_string(), "{res}");
    }
    let (status, _) = app.patch(&path, None, json!({"content": "x"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Delete: not by another member, not by an outsider; by an admin, yes.
    let (status, res) = app.delete(&path, Some(&carol.token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{res}");
    let (status, _) = app.delete(&path, Some(&eve.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.delete(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["messageId"], id);
    assert_eq!(body["roomId"], room.to_string());
    assert_eq!(body["deletedBy"], alice.id.to_string());
    assert!(body["deletedAt"].is_string());
    let msgs = history(&app, &bob, room).await;
    assert_eq!(msgs[0]["seq"], 1);
    assert_eq!(msgs[0]["content"], Value::Null);
    assert_eq!(msgs[0]["deletedAt"], body["deletedAt"]);
    let (status, _) = app.delete(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already deleted");
    let (status, _) = app
        .patch(&path, Some(&bob.token), json!({"content": "undead"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no edits after a delete");
    let (status, _) = app
        .delete(
            &format!("/api/v1/messages/{}", Uuid::now_v7()),
            Some(&bob.token),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.delete("/api/v1/messages/nope", Some(&bob.token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The sender deletes their own.
    let carols = sent(&app, &carol, room, "oops").await;
    let (status, _) = app
        .delete(
            &format!("/api/v1/messages/{}", carols["id"].as_str().unwrap()),
            Some(&carol.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn messages_already_in_mysql_can_be_edited_and_deleted() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = id_of(&app.create_room(&alice, "Old", false).await);
    app.seed_messages(room, alice.id, 3).await;
    let stored = history(&app, &alice, room).await;
    let first = stored[0]["id"].as_str().unwrap();
    let (status, body) = app
        .patch(
            &format!("/api/v1/messages/{first}"),
            Some(&alice.token),
            json!({"content": "revised"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["seq"], 1);
    // New messages continue after what MySQL has.
    assert_eq!(sent(&app, &alice, room, "fourth").await["seq"], 4);
}

#[tokio::test]
async fn marking_read_moves_the_cursor_forward_only() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let eve = app.register("eve").await;
    let room = id_of(&app.create_room(&alice, "Reading", false).await);
    let secret = id_of(&app.create_room(&alice, "Secret", true).await);
    join(&app, &bob, room).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(sent(&app, &alice, room, &format!("m{i}")).await["id"].clone());
    }
    let path = format!("/api/v1/rooms/{room}/read");
    let mut ps = subscribe(&app, &[room_channel(&app, room)]).await;

    let (status, body) = app.post(&path, Some(&bob.token), json!({"seq": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"roomId": room.to_string(), "readSeq": 2, "moved": true})
    );
    let (_, ev) = next_msg(&mut ps).await;
    assert_eq!(ev["e"], "message_read");
    assert_eq!(ev["d"]["userId"], bob.id.to_string());
    assert_eq!(ev["d"]["seq"], 2);
    assert_eq!(ev["d"]["messageId"], ids[1]);

    let (_, body) = app.post(&path, Some(&bob.token), json!({"seq": 1})).await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(2), Some(false))
    );
    let (_, body) = app
        .post(&path, Some(&bob.token), json!({"messageId": ids[2]}))
        .await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(3), Some(true))
    );
    let (_, body) = app.post(&path, Some(&bob.token), json!({"seq": 99})).await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(3), Some(false)),
        "never past the last message"
    );
    let (_, body) = app
        .post(&path, Some(&alice.token), json!({"seq": 99}))
        .await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(3), Some(true)),
        "clamped to the last message"
    );

    for (body, field) in [
        (json!({}), "seq"),
        (json!({"seq": -1}), "seq"),
        (json!({"seq": "2"}), "seq"),
        (json!({"seq": 1.5}), "seq"),
        (json!({"messageId": "nope"}), "messageId"),
        (json!({"messageId": 5}), "messageId"),
        (json!({"seq": 1, "messageId": ids[0]}), "messageId"),
    ] {
        let (status, res) = app.post(&path, Some(&bob.token), body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {res}");
        assert!(res["error"]["fields"][field].is_string(), "{body}: {res}");
    }
    let (status, _) = app
        .post(
            &path,
            Some(&bob.token),
            json!({"messageId": Uuid::now_v7()}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown message");
    let other = id_of(&app.create_room(&bob, "Other", false).await);
    let elsewhere = sent(&app, &bob, other, "elsewhere").await;
    let (status, _) = app
        .post(
            &path,
            Some(&bob.token),
            json!({"messageId": elsewhere["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a message of another room");

    let (status, res) = app.post(&path, Some(&eve.token), json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{res}");
    let (status, _) = app
        .post(
            &format!("/api/v1/rooms/{secret}/read"),
            Some(&eve.token),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            "/api/v1/rooms/xyz/read",
            Some(&bob.token),
            json!({"seq": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.post(&path, None, json!({"seq": 1})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_read_cursor_mysql_has_is_the_floor() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = id_of(&app.create_room(&alice, "Stored", false).await);
    app.seed_messages(room, alice.id, 8).await;
    sqlx::query("UPDATE room_members SET read_seq = 5 WHERE room_id = ? AND user_id = ?")
        .bind(room)
        .bind(alice.id)
        .execute(app.store.pool())
        .await
        .unwrap();
    let path = format!("/api/v1/rooms/{room}/read");
    let (_, body) = app.post(&path, Some(&alice.token), json!({"seq": 3})).await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(5), Some(false)),
        "{body}"
    );
    let (_, body) = app.post(&path, Some(&alice.token), json!({"seq": 7})).await;
    assert_eq!(
        (body["readSeq"].as_i64(), body["moved"].as_bool()),
        (Some(7), Some(true)),
        "{body}"
    );
}

#[tokio::test]
async fn membership_changes_and_logout_publish_control_messages() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room_json = app.create_room(&alice, "Controlled", true).await;
    let room = id_of(&room_json);
    let code = room_json["inviteCode"].as_str().unwrap().to_owned();
    let mut ps = subscribe(&app, &[control_channel(&app), room_channel(&app, room)]).await;

    // Joining by invite code: the room hears user_joined, the gateways member_added.
    let (status, body) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": code}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(
        (ch.as_str(), &ev["e"]),
        (room_channel(&app, room).as_str(), &json!("user_joined"))
    );
    assert_eq!(ev["d"]["userId"], bob.id.to_string());
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(ch, control_channel(&app));
    assert_eq!(
        ev,
        json!({"k": "member_added", "room": room.to_string(), "user": bob.id.to_string()})
    );

    let member_path = format!("/api/v1/rooms/{room}/members/{}", bob.id);
    let (status, _) = app
        .patch(&member_path, Some(&alice.token), json!({"role": "admin"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, ev) = next_msg(&mut ps).await;
    assert_eq!(ev["e"], "role_changed");
    let (_, ev) = next_msg(&mut ps).await;
    assert_eq!(
        ev,
        json!({"k": "role_changed", "room": room.to_string(), "user": bob.id.to_string()})
    );
    let (status, _) = app
        .patch(&member_path, Some(&alice.token), json!({"role": "member"}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    next_msg(&mut ps).await;
    next_msg(&mut ps).await;

    // Kicking: the room hears user_left, the gateways member_removed.
    let (status, _) = app.delete(&member_path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(ch, room_channel(&app, room));
    assert_eq!(ev["e"], "user_left");
    assert_eq!(ev["d"]["userId"], bob.id.to_string());
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(ch, control_channel(&app));
    assert_eq!(
        ev,
        json!({"k": "member_removed", "room": room.to_string(), "user": bob.id.to_string()})
    );

    // A refused change publishes nothing; the next message is the logout's.
    let (status, _) = app.delete(&member_path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Logout: the gateways disconnect the sockets of that token.
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(ch, control_channel(&app));
    assert_eq!(ev["k"], "token_revoked");
    assert_eq!(ev["user"], bob.id.to_string());
    assert!(ev["jti"].as_str().unwrap().parse::<Uuid>().is_ok());

    // The last member leaving deletes the room.
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/rooms/{room}/leave"),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, ev) = next_msg(&mut ps).await;
    assert_eq!(ev["e"], "room_deleted");
    let (ch, ev) = next_msg(&mut ps).await;
    assert_eq!(ch, control_channel(&app));
    assert_eq!(ev, json!({"k": "room_deleted", "room": room.to_string()}));
}

#[tokio::test]
async fn leaving_and_deleting_a_room_publish_control_messages() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = id_of(&app.create_room(&alice, "Public", false).await);
    let mut ps = subscribe(&app, &[control_channel(&app)]).await;
    join(&app, &bob, room).await;
    assert_eq!(next_msg(&mut ps).await.1["k"], "member_added");
    // Joining again changes nothing and announces nothing.
    join(&app, &bob, room).await;
    let (status, _) = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/rooms/{room}/leave"),
            Some(&bob.token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        next_msg(&mut ps).await.1,
        json!({"k": "member_removed", "room": room.to_string(), "user": bob.id.to_string()})
    );
    let (status, _) = app
        .delete(&format!("/api/v1/rooms/{room}"), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        next_msg(&mut ps).await.1,
        json!({"k": "room_deleted", "room": room.to_string()})
    );
}
