//! The run's users and rooms: registered through the REST API, or minted directly in the database.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

/// A user the tool connects as.
#[derive(Clone)]
pub struct BenchUser {
    pub token: String,
}

/// The HTTP client of the API calls.
fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
}

/// Registers `n` users named `b<run>_<i>` through `POST /api/v1/auth/register`, `parallel` at a time,
/// waiting out 429 answers.
///
/// # Errors
/// A registration that fails for another reason (the first one's status and body).
pub async fn register(
    api: &str,
    run: &str,
    n: usize,
    parallel: usize,
) -> anyhow::Result<Vec<BenchUser>> {
    let http = client()?;
    stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let name = format!("b{run}_{i}");
                let body = json!({
                    "username": name,
                    "email": format!("{name}@bench.invalid"),
                    "password": "bench-password-not-secret",
                });
                let b = post(&http, &format!("{api}/api/v1/auth/register"), None, &body).await?;
                let token = b
                    .get("accessToken")
                    .and_then(Value::as_str)
                    .context("register: no accessToken in the answer")?
                    .to_owned();
                anyhow::Ok(BenchUser { token })
            }
        })
        .buffered(parallel.max(1))
        .try_collect()
        .await
}

/// Creates `n` public rooms through `POST /api/v1/rooms`, room `i` owned by `owners[i % len]`.
///
/// # Errors
/// A creation that fails.
pub async fn create_rooms(
    api: &str,
    run: &str,
    owners: &[BenchUser],
    n: usize,
) -> anyhow::Result<Vec<Uuid>> {
    let http = client()?;
    stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let owner = &owners[i % owners.len()];
            async move {
                let body = json!({ "name": format!("bench {run} {i}"), "isPrivate": false });
                let b = post(
                    &http,
                    &format!("{api}/api/v1/rooms"),
                    Some(&owner.token),
                    &body,
                )
                .await?;
                b.get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<Uuid>().ok())
                    .context("create room: no id in the answer")
            }
        })
        .buffered(8)
        .try_collect()
        .await
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    for _attempt in 0..30 {
        let mut req = http.post(url).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.with_context(|| format!("POST {url}"))?;
        let status = r.status();
        if status.as_u16() == 429 {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 60);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {url}: {status} {text}");
        }
        return serde_json::from_str(&text)
            .with_context(|| format!("POST {url}: not JSON: {text}"));
    }
    bail!("POST {url}: still rate limited after 30 tries (raise API_RATE_LIMIT_PER_MINUTE for bench runs)")
}

/// Mints `n` users (not loginable) and `rooms` public rooms directly in the database at `db`, and
/// signs access tokens for the users with `secret`. `members` are `(room index, connection index)`
/// pairs: connection `i` is user `i % n`, made a member of the room in bulk, as a returning member is
/// (through `--api`, membership instead comes from the first `join_room` of a public room).
///
/// # Errors
/// Database errors.
pub async fn seed(
    db: &str,
    secret: &str,
    run: &str,
    n: usize,
    rooms: usize,
    members: &[(usize, usize)],
) -> anyhow::Result<(Vec<BenchUser>, Vec<Uuid>)> {
    let store = chat_store::Store::connect(db, 8)
        .await
        .with_context(|| "connecting to the --users-from-seed database")?;
    let keys = chat_auth::TokenKeys::new(secret.as_bytes(), Duration::from_secs(24 * 3600));
    let ids: Vec<Uuid> = stream::iter(0..n)
        .map(|i| {
            let store = &store;
            async move {
                let name = format!("b{run}_{i}");
                let u = store
                    .create_user(chat_store::users::NewUser {
                        username: &name,
                        email: &format!("{name}@bench.invalid"),
                        password_hash: "!not-loginable",
                        full_name: None,
                    })
                    .await?;
                anyhow::Ok(u.id)
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let now = chrono::Utc::now();
    let users = ids
        .iter()
        .map(|id| {
            let (token, _) = keys.issue(*id, now)?;
            anyhow::Ok(BenchUser { token })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut room_ids = Vec::with_capacity(rooms);
    for i in 0..rooms {
        let r = store
            .create_room(chat_store::rooms::NewRoom {
                name: &format!("bench {run} {i}"),
                description: None,
                is_private: false,
                invite_code: &format!("b{run}r{i}"),
                created_by: ids[i % ids.len()],
            })
            .await?;
        room_ids.push(r.id);
    }
    // The members, as they would be in a chat people use: joining is then a lookup, as for any
    // returning member, not a first join.
    let pairs: Vec<(Uuid, Uuid)> = members
        .iter()
        .map(|&(r, u)| (room_ids[r], ids[u % ids.len()]))
        .collect();
    for chunk in pairs.chunks(1000) {
        let mut qb = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT IGNORE INTO room_members (room_id, user_id, role, joined_at) ",
        );
        qb.push_values(chunk, |mut b, (room, user)| {
            b.push_bind(*room)
                .push_bind(*user)
                .push_bind("member")
                .push_bind(now);
        });
        qb.build()
            .execute(store.pool())
            .await
            .context("adding the members")?;
    }
    store.pool().close().await;
    Ok((users, room_ids))
}
