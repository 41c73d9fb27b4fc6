use crate::helpers::{error_code, id_of, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn creating_rooms_makes_the_creator_admin_and_private_rooms_get_an_invite_code() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let public = app.create_room(&alice, "General", false).await;
    assert_eq!(public["isPrivate"], false);
    assert_eq!(public["myRole"], "admin");
    assert_eq!(public["memberCount"], 1);
    let private = app.create_room(&alice, "Secret", true).await;
    assert_eq!(private["isPrivate"], true);
    assert_eq!(private["inviteCode"].as_str().map(str::len), Some(12));

    let (status, body) = app
        .post("/api/v1/rooms", Some(&alice.token), json!({"name": "   "}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["name"].is_string());
    let (status, _) = app
        .post(
            "/api/v1/rooms",
            Some(&alice.token),
            json!({"name": "x".repeat(101)}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app.post("/api/v1/rooms", None, json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn my_rooms_list_roles_unread_counts_and_last_messages() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let busy = app.create_room(&alice, "Busy", false).await;
    let quiet = app.create_room(&alice, "Quiet", false).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/rooms/{}/join", id_of(&busy)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.seed_messages(id_of(&busy), alice.id, 7).await;
    // Bob has read up to seq 3 (as the worker records a read receipt).
    let read = chat_store::batch::CursorUpdate {
        room_id: id_of(&busy),
        user_id: bob.id,
        read_seq: 3,
        delivered_seq: 0,
    };
    let batch = chat_store::batch::Batch {
        cursors: vec![read],
        ..Default::default()
    };
    app.store.apply_batch(&batch).await.unwrap();

    let (status, rooms) = app.get("/api/v1/rooms", Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK);
    let rooms = rooms.as_array().unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["name"], "Busy");
    assert_eq!(rooms[0]["role"], "member");
    assert_eq!(rooms[0]["lastSeq"], 7);
    assert_eq!(rooms[0]["readSeq"], 3);
    assert_eq!(rooms[0]["unreadCount"], 4);
    assert_eq!(rooms[0]["lastMessage"]["content"], "message 7");

    let (_, rooms) = app.get("/api/v1/rooms", Some(&alice.token)).await;
    let names: Vec<_> = rooms
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Busy", "Quiet"], "most recently active first");
    assert_eq!(rooms[1]["lastMessage"], serde_json::Value::Null);
    assert_eq!(rooms[1]["unreadCount"], 0);
    let _ = quiet;
}

#[tokio::test]
async fn discover_lists_public_rooms_paginated_and_searchable() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for i in 0..5 {
        app.create_room(&alice, &format!("Rust {i}"), false).await;
    }
    app.create_room(&alice, "Gardening", false).await;
    app.create_room(&alice, "Rust secret", true).await;

    let (status, page) = app
        .get("/api/v1/rooms/discover?limit=2", Some(&bob.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["total"], 6, "private rooms are not listed");
    assert_eq!(page["rooms"].as_array().unwrap().len(), 2);
    assert!(page["rooms"][0].get("inviteCode").is_none());

    let (_, page) = app
        .get(
            "/api/v1/rooms/discover?q=rust&limit=10&offset=3",
            Some(&bob.token),
        )
        .await;
    assert_eq!(page["total"], 5);
    let names: Vec<_> = page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Rust 3", "Rust 4"]);

    for bad in ["limit=0", "limit=101", "offset=-1", "limit=abc"] {
        let (status, _) = app
            .get(&format!("/api/v1/rooms/discover?{bad}"), Some(&bob.token))
            .await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status}"
        );
    }
}

#[tokio::test]
async fn private_rooms_are_invisible_to_non_members() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let eve = app.register("eve").await;
    let secret = app.create_room(&alice, "Secret", true).await;
    let id = id_of(&secret);
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/api/v1/rooms/{id}"),
        format!("/api/v1/rooms/{id}/messages"),
        format!("/api/v1/rooms/{id}/members"),
    ] {
        let (status, body) = app.get(&path, Some(&eve.token)).await;
        let (status_missing, body_missing) = app
            .get(
                &path.replace(&id.to_string(), &missing.to_string()),
                Some(&eve.token),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(status_missing, StatusCode::NOT_FOUND);
        assert_eq!(error_code(&body), error_code(&body_missing), "{path}");
    }
    let (status, _) = app
        .patch(
            &format!("/api/v1/rooms/{id}"),
            Some(&eve.token),
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A public room is visible, but its invite code is not shown to outsiders.
    let public = app.create_room(&alice, "Open", false).await;
    let (status, body) = app
        .get(
            &format!("/api/v1/rooms/{}", id_of(&public)),
            Some(&eve.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("inviteCode").is_none());
    assert_eq!(body["myRole"], serde_json::Value::Null);
}

#[tokio::test]
async fn joining_public_rooms_by_id_and_private_rooms_only_with_the_invite() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let public = app.create_room(&alice, "Open", false).await;
    let (status, body) = app
        .post(
            &format!("/api/v1/rooms/{}/join", id_of(&public)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["joined"], true);
    assert_eq!(body["room"]["myRole"], "member");
    assert_eq!(body["room"]["memberCount"], 2);
    // Joining again changes nothing.
    let res = app
        .client
        .post(app.url(&format!("/api/v1/rooms/{}/join", id_of(&public))))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["joined"], false);

    let private = app.create_room(&alice, "Secret", true).await;
    let code = private["inviteCode"].as_str().unwrap();
    let path = format!("/api/v1/rooms/{}/join", id_of(&private));
    let (status, _) = app.post(&path, Some(&bob.token), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(&path, Some(&bob.token), json!({"inviteCode": "wrong-code"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(&path, Some(&bob.token), json!({"inviteCode": code}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["room"].get("inviteCode").is_none(),
        "members of a private room do not see its code; admins do"
    );
}

#[tokio::test]
async fn invite_codes_alone_preview_and_join_a_room() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let private = app.create_room(&alice, "Secret", true).await;
    let code = private["inviteCode"].as_str().unwrap();
    let (status, preview) = app
        .get(&format!("/api/v1/invites/{code}"), Some(&carol.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(preview["name"], "Secret");
    assert_eq!(preview["myRole"], serde_json::Value::Null);
    let (status, body) = app
        .post(
            "/api/v1/rooms/join",
            Some(&carol.token),
            json!({"inviteCode": code}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room"]["id"], private["id"]);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&carol.token),
            json!({"inviteCode": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post("/api/v1/rooms/join", Some(&carol.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["fields"]["inviteCode"].is_string());
}

#[tokio::test]
async fn rotating_the_invite_code_retires_the_old_one() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Secret", true).await;
    let old = room["inviteCode"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/v1/rooms/{}/invite", id_of(&room)),
            Some(&alice.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let new = body["inviteCode"].as_str().unwrap();
    assert_ne!(old, new);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": old}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": new}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post(
            &format!("/api/v1/rooms/{}/invite", id_of(&room)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "members cannot rotate: {body}"
    );
}

#[tokio::test]
async fn only_admins_update_or_delete_a_room() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Team", false).await;
    let path = format!("/api/v1/rooms/{}", id_of(&room));
    app.post(&format!("{path}/join"), Some(&bob.token), json!({}))
        .await;

    let (status, body) = app
        .patch(&path, Some(&bob.token), json!({"name": "Bob's"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&body), "FORBIDDEN");
    let (status, _) = app.delete(&path, Some(&bob.token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = app
        .patch(
            &path,
            Some(&alice.token),
            json!({"name": "Team 2", "description": "d", "isPrivate": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["isPrivate"].as_bool()),
        (Some("Team 2"), Some(true))
    );
    let (status, _) = app
        .patch(&path, Some(&alice.token), json!({"name": ""}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, _) = app.delete(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_last_admin_must_promote_someone_before_leaving() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Team", false).await;
    let path = format!("/api/v1/rooms/{}", id_of(&room));
    app.post(&format!("{path}/join"), Some(&bob.token), json!({}))
        .await;

    let (status, body) = app
        .post(&format!("{path}/leave"), Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "LAST_ADMIN");
    let (status, body) = app
        .patch(
            &format!("{path}/members/{}", alice.id),
            Some(&alice.token),
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "demoting the last admin is refused too: {body}"
    );

    let (status, _) = app
        .patch(
            &format!("{path}/members/{}", bob.id),
            Some(&alice.token),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .post(&format!("{path}/leave"), Some(&alice.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, members) = app.get(&format!("{path}/members"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(members[0]["role"], "admin");

    // The last member leaving deletes the room.
    let (status, _) = app
        .post(&format!("{path}/leave"), Some(&bob.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Leaving a room one is not in.
    let other = app.create_room(&alice, "Other", false).await;
    let (status, _) = app
        .post(
            &format!("/api/v1/rooms/{}/leave", id_of(&other)),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_are_listed_with_roles_and_admins_change_roles_and_kick() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = app.create_room(&alice, "Secret", true).await;
    let code = room["inviteCode"].as_str().unwrap();
    let path = format!("/api/v1/rooms/{}", id_of(&room));
    for s in [&bob, &carol] {
        let (status, _) = app
            .post(
                "/api/v1/rooms/join",
                Some(&s.token),
                json!({"inviteCode": code}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, members) = app.get(&format!("{path}/members"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK);
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(
        (members[0]["username"].as_str(), members[0]["role"].as_str()),
        (Some("alice"), Some("admin"))
    );
    assert_eq!(members[1]["online"], false);

    // Members cannot administer.
    let (status, _) = app
        .patch(
            &format!("{path}/members/{}", carol.id),
            Some(&bob.token),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .delete(&format!("{path}/members/{}", carol.id), Some(&bob.token))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .patch(
            &format!("{path}/members/{}", carol.id),
            Some(&alice.token),
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The admin kicks Bob: he loses access to the private room at once.
    let (status, _) = app
        .delete(&format!("{path}/members/{}", bob.id), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("{path}/messages"), Some(&bob.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .delete(&format!("{path}/members/{}", bob.id), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not a member any more");
    let (status, _) = app
        .delete(&format!("{path}/members/{}", alice.id), Some(&alice.token))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "admins leave, they don't kick themselves"
    );
    let (status, _) = app
        .delete(&format!("{path}/members/not-a-uuid"), Some(&alice.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invite_codes_are_case_sensitive() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Secret", true).await;
    let code = room["inviteCode"].as_str().unwrap();
    let flipped: String = code
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    assert_ne!(flipped, code);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": flipped}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": code}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn making_a_room_private_retires_the_invite_code_seen_while_public() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Open", false).await;
    let old = room["inviteCode"].as_str().unwrap().to_owned();
    let (status, body) = app
        .patch(
            &format!("/api/v1/rooms/{}", id_of(&room)),
            Some(&alice.token),
            json!({"isPrivate": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(body["inviteCode"].as_str().unwrap(), old);
    let (status, _) = app
        .post(
            "/api/v1/rooms/join",
            Some(&bob.token),
            json!({"inviteCode": old}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_writes_recheck_the_callers_role_in_the_same_statement() {
    // What a request that passed its admin check just before the caller was demoted would run.
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let room = app.create_room(&alice, "Team", false).await;
    let id = id_of(&room);
    app.post(
        &format!("/api/v1/rooms/{id}/join"),
        Some(&bob.token),
        json!({}),
    )
    .await;
    let s = &app.store;
    assert!(matches!(
        s.set_invite_code(id, bob.id, "stolen-code").await,
        Err(chat_store::StoreError::NotFound)
    ));
    assert!(matches!(
        s.delete_room(id, bob.id).await,
        Err(chat_store::StoreError::NotFound)
    ));
    assert!(matches!(
        s.update_room(
            id,
            bob.id,
            chat_store::rooms::RoomUpdate {
                name: Some("x"),
                ..Default::default()
            }
        )
        .await,
        Err(chat_store::StoreError::NotFound)
    ));
    assert_eq!(
        s.set_role(id, bob.id, bob.id, "admin").await.unwrap(),
        chat_store::rooms::MembershipChange::NotAdmin
    );
    assert_eq!(
        s.remove_member(id, alice.id, Some(bob.id)).await.unwrap(),
        chat_store::rooms::MembershipChange::NotAdmin
    );
    // A stale invite code admits nobody, even to a public room.
    assert!(!s
        .add_member(id, uuid::Uuid::now_v7(), Some("stale"))
        .await
        .unwrap());
    let (status, r) = app
        .get(&format!("/api/v1/rooms/{id}"), Some(&alice.token))
        .await;
    assert_eq!((status, r["name"].as_str()), (StatusCode::OK, Some("Team")));
}

#[tokio::test]
async fn members_are_paged_admins_first_and_bad_paging_is_refused() {
    let app = spawn_app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let room = app.create_room(&alice, "Crowd", false).await;
    let path = format!("/api/v1/rooms/{}/members", id_of(&room));
    for u in [&bob, &carol] {
        let (status, _) = app
            .post(
                &format!("/api/v1/rooms/{}/join", id_of(&room)),
                Some(&u.token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, all) = app.get(&path, Some(&bob.token)).await;
    assert_eq!(status, StatusCode::OK);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["userId"].as_str().unwrap().to_owned())
            .collect()
    };
    // The admin first, then by join time.
    assert_eq!(
        names(&all),
        vec![
            alice.id.to_string(),
            bob.id.to_string(),
            carol.id.to_string()
        ]
    );
    let (_, first) = app.get(&format!("{path}?limit=2"), Some(&bob.token)).await;
    let (_, rest) = app
        .get(&format!("{path}?limit=2&offset=2"), Some(&bob.token))
        .await;
    assert_eq!(names(&first), &names(&all)[..2]);
    assert_eq!(names(&rest), &names(&all)[2..]);
    let (_, past) = app.get(&format!("{path}?offset=3"), Some(&bob.token)).await;
    assert_eq!(past, json!([]));
    for bad in ["limit=0", "limit=1001", "offset=-1"] {
        let (status, body) = app.get(&format!("{path}?{bad}"), Some(&bob.token)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(error_code(&body), "VALIDATION", "{bad}: {body}");
    }
    // Not a number at all: the query string itself is refused.
    let (status, body) = app
        .get(&format!("{path}?limit=abc"), Some(&bob.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
