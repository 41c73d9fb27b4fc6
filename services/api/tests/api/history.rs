use crate::helpers::{error_code, id_of, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_pages_by_seq_cursor_in_ascending_order() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, "Chatty", false).await;
    let id = id_of(&room);
    app.seed_messages(id, alice.id, 120).await;
    let path = format!("/api/v1/rooms/{id}/messages");

    let (status, page) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        seqs(&page),
        (71..=120).collect::<Vec<_>>(),
        "the newest 50 by default, ascending"
    );
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["nextBefore"], 71);
    let m = &page["messages"][0];
    assert_eq!(m["roomId"], room["id"]);
    assert_eq!(m["senderId"], alice.id.to_string());
    assert_eq!(m["type"], "text");
    assert_eq!(m["content"], "message 71");
    assert!(m.get("editedAt").is_none() && m.get("deletedAt").is_none());

    let (_, page) = app
        .get(&format!("{path}?before=71&limit=100"), Some(&alice.token))
        .await;
    assert_eq!(seqs(&page), (1..=70).collect::<Vec<_>>());
    assert_eq!(page["hasMore"], false);

    let (_, page) = app
        .get(&format!("{path}?after=100&limit=10"), Some(&alice.token))
        .await;
    assert_eq!(seqs(&page), (101..=110).collect::<Vec<_>>());
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["nextAfter"], 110);

    let (_, page) = app
        .get(&format!("{path}?after=10&before=15"), Some(&alice.token))
        .await;
    assert_eq!(seqs(&page), vec![11, 12, 13, 14]);

    let (_, page) = app
        .get(&format!("{path}?after=120"), Some(&alice.token))
        .await;
    assert!(seqs(&page).is_empty());
    assert_eq!(page["hasMore"], false);
}

#[tokio::test]
async fn edited_and_deleted_messages_show_as_such() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let room = app.create_room(&alice, "Room", false).await;
    let id = id_of(&room);
    app.seed_messages(id, alice.id, 3).await;
    sqlx::query(
        "UPDATE messages SET content = 'edited', edited_at = NOW(3) WHERE room_id = ? AND seq = 1",
    )
    .bind(id)
    .execute(app.store.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE messages SET content = NULL, deleted_at = NOW(3) WHERE room_id = ? AND seq = 2",
    )
    .bind(id)
    .execute(app.store.pool())
    .await
    .unwrap();
    let (_, page) = app
        .get(&format!("/api/v1/rooms/{id}/messages"), Some(&alice.token))
        .await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["content"], "edited");
    assert!(msgs[0]["editedAt"].is_string());
    assert_eq!(msgs[1]["content"], Value::Null);
    assert!(msgs[1]["deletedAt"].is_string());
    assert_eq!(msgs[2]["content"], "message 3");
}

#[tokio::test]
async fn history_is_for_members_only_and_checks_its_parameters() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Open", false).await;
    let path = format!("/api/v1/rooms/{}/messages", id_of(&room));
    let (status, body) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a public room's history needs joining first"
    );
    assert_eq!(error_code(&body), "FORBIDDEN");
    let (status, _) = app.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for bad in ["limit=0", "limit=101", "before=-1", "after=-5"] {
        let (status, body) = app.get(&format!("{path}?{bad}"), Some(&alice.token)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let (status, _) = app
        .get(&format!("{path}?before=abc"), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    app.post(
        &format!("/api/v1/rooms/{}/join", id_of(&room)),
        Some(&bob.token),
        json!({}),
    )
    .await;
    let (status, _) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK);
}
