//! Rows as the rest of the system sees them. They serialize in the wire contract's camelCase, so the API
//! returns them as they are; secrets (`password_hash`) are never serialized.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A user account.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub full_name: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What other users may see of a user.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    pub full_name: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A room. `invite_code` is only filled in for callers allowed to see it.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub is_private: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_code: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub member_count: i64,
}

/// A user's membership of a room.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub room_id: Uuid,
    pub user_id: Uuid,
    /// `admin` or `member`.
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub read_seq: i64,
    pub delivered_seq: i64,
}

impl Membership {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// A member as listed in a room.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
    pub full_name: Option<String>,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub read_seq: i64,
    pub delivered_seq: i64,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A chat message. Deleted messages keep their place (`seq`) with `content: null`. It deserializes from
/// its own JSON too: the gateway keeps recent messages in Redis in this form.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    /// `text`, `image` or `file`.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One of "my rooms": the room, my role and cursors, the unread count and the last message.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomSummary {
    #[serde(flatten)]
    pub room: Room,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub last_seq: i64,
    pub read_seq: i64,
    pub delivered_seq: i64,
    pub unread_count: i64,
    pub last_message: Option<Message>,
}
