//! Seeds a room with many messages for the history benchmark (`bench/history.sh`), and measures the cost
//! of one password verification (what a login spends in argon2).
//!
//! `cargo run --release -p chat-api --example seed_history -- [messages]` with `DATABASE_URL` and
//! `JWT_SECRET` set as for the API. Prints `ROOM=<id>` and `TOKEN=<access token>` for the load tool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_auth::{PasswordHasher, TokenKeys};
use chat_config::Config;
use chat_store::messages::NewMessage;
use chat_store::rooms::NewRoom;
use chat_store::users::NewUser;
use chat_store::Store;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let config = Config::from_env()?;
    let store = Store::connect(config.database_url.expose(), 4).await?;
    store.migrate().await?;

    let hasher = PasswordHasher::new();
    let hash = hasher.hash("bench-password")?;
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        assert!(hasher.verify("bench-password", Some(&hash)));
    }
    let per = t.elapsed() / rounds;
    eprintln!(
        "argon2id verify (m=19456 KiB, t=2, p=1): {:.1} ms per login",
        per.as_secs_f64() * 1e3
    );

    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let user = store
        .create_user(NewUser {
            username: &format!("bench_{tag}"),
            email: &format!("bench_{tag}@example.com"),
            password_hash: &hash,
            full_name: None,
        })
        .await?;
    let room = store
        .create_room(NewRoom {
            name: "history bench",
            description: None,
            is_private: false,
            invite_code: &chat_auth::new_invite_code(),
            created_by: user.id,
        })
        .await?;
    let t = Instant::now();
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    let chunk = 5_000;
    let mut seq = 1;
    while seq <= n {
        let end = (seq + chunk - 1).min(n);
        let batch: Vec<NewMessage> = (seq..=end)
            .map(|s| NewMessage {
                id: Uuid::now_v7(),
                room_id: room.id,
                seq: s,
                sender_id: user.id,
                kind: "text".into(),
                content: format!(
                    "benchmark message number {s} with a little text to make it realistic"
                ),
                client_msg_id: None,
                created_at: start + chrono::Duration::milliseconds(s),
            })
            .collect();
        store.insert_messages(&batch).await?;
        seq = end + 1;
    }
    eprintln!("seeded {n} messages in {:.1} s", t.elapsed().as_secs_f64());
    let keys = TokenKeys::new(
        config.jwt_secret.expose().as_bytes(),
        Duration::from_secs(86_400),
    );
    let (token, _) = keys.issue(user.id, chrono::Utc::now())?;
    println!("ROOM={}", room.id);
    println!("TOKEN={token}");
    println!("USER={}", user.username);
    Ok(())
}
