//! `/users`: my profile, and other users' public profiles with presence.

use super::auth::conflict_to_api;
use super::error::{ApiError, ErrorBody, Result};
use super::extract::{parse_id, AuthUser, Json};
use crate::state::AppState;
use axum::extract::{Path, State};
use chat_domain::{Email, FieldErrors, FullName, Password, Username};
use chat_store::users::ProfileUpdate;
use chat_store::User;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_me))
        .routes(routes!(get_user))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMeRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    pub full_name: Option<String>,
    /// A new password; requires `currentPassword`, and ends every other session.
    pub password: Option<String>,
    pub current_password: Option<String>,
}

/// What anyone signed in may see of a user.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicProfile {
    pub id: Uuid,
    pub username: String,
    pub full_name: Option<String>,
    pub online: bool,
    /// `online` or `offline`.
    pub status: &'static str,
    pub last_seen: Option<DateTime<Utc>>,
}

/// Change my username, e-mail, display name or password.
#[utoipa::path(patch, path = "/users/me", tag = "users", request_body = UpdateMeRequest, security(("bearer" = [])),
    responses((status = 200, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_me(
    State(st): State<AppState>,
    user: AuthUser,
    Json(req): Json<UpdateMeRequest>,
) -> Result<axum::Json<User>> {
    let mut errs = FieldErrors::new();
    let username = errs.optional("username", req.username.as_deref(), Username::parse);
    let email = errs.optional("email", req.email.as_deref(), Email::parse);
    let full_name = errs.optional("fullName", req.full_name.as_deref(), FullName::parse);
    let password = errs.optional("password", req.password.as_deref(), Password::parse);
    if password.is_some() && req.current_password.is_none() {
        errs.add("currentPassword", "is required to change the password");
    }
    errs.into_result()?;

    let mut password_hash = None;
    if let Some(new) = &password {
        let current = st.store.user_by_id(user.id).await?;
        let ok = st
            .verify_password(
                req.current_password.unwrap_or_default(),
                Some(current.password_hash),
            )
            .await
            .map_err(ApiError::hashing)?;
        if !ok {
            return Err(ApiError::field("currentPassword", "is incorrect"));
        }
        password_hash = Some(
            st.hash_password(new.expose().to_owned())
                .await
                .map_err(ApiError::hashing)?,
        );
    }
    let updated = st
        .store
        .update_user(
            user.id,
            ProfileUpdate {
                username: username.as_ref().map(|u| u.as_str()),
                email: email.as_ref().map(|e| e.as_str()),
                full_name: full_name.as_ref().map(|n| n.as_str()),
                password_hash: password_hash.as_deref(),
            },
        )
        .await
        .map_err(conflict_to_api)?;
    if password_hash.is_some() {
        st.store.revoke_all_refresh_tokens(user.id).await?;
    }
    Ok(axum::Json(updated))
}

/// A user's public profile with presence.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = PublicProfile), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(st): State<AppState>,
    _user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<PublicProfile>> {
    let id = parse_id(&id, "id")?;
    let u = st.store.public_user(id).await.map_err(|e| match e {
        chat_store::StoreError::NotFound => ApiError::NotFound("user not found".into()),
        e => e.into(),
    })?;
    let online = st.bus.is_online(id).await?;
    Ok(axum::Json(PublicProfile {
        id: u.id,
        username: u.username,
        full_name: u.full_name,
        online,
        status: if online { "online" } else { "offline" },
        last_seen: u.last_seen,
    }))
}
