//! `/auth`: register, login, refresh (rotating), logout, me.

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{AuthUser, ClientIp, Json, OptionalJson};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use chat_domain::{Email, FieldErrors, FullName, Password, Username};
use chat_store::refresh_tokens::Rotation;
use chat_store::users::NewUser;
use chat_store::{StoreError, User};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// 3–32 letters, digits, `_`, `.`, `-`, starting with a letter or digit.
    #[schema(
        required = true,
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$"
    )]
    pub username: Option<String>,
    #[schema(
        required = true,
        max_length = 254,
        pattern = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$"
    )]
    pub email: Option<String>,
    /// 8–128 characters.
    #[schema(required = true, min_length = 8, max_length = 128)]
    pub password: Option<String>,
    #[schema(max_length = 100)]
    pub full_name: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// E-mail or username (`email` and `username` are accepted as aliases).
    #[schema(min_length = 1, max_length = 254)]
    pub login: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    #[schema(min_length = 1, max_length = 1024)]
    pub password: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    pub refresh_token: Option<String>,
}

/// Tokens of a session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: String,
    /// Single use: every refresh returns a new one.
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthResponse {
    pub user: User,
    #[serde(flatten)]
    pub tokens: Tokens,
}

/// Issues an access token and a refresh token of `family` (a new family for a new login).
async fn issue(st: &AppState, user: Uuid, family: Uuid) -> Result<Tokens> {
    let now = Utc::now();
    let (access_token, _) = st.tokens.issue(user, now).map_err(ApiError::internal)?;
    let (refresh_token, hash) = chat_auth::new_refresh_token();
    let expires = now + st.config.refresh_token_ttl;
    st.store
        .insert_refresh_token(user, family, &hash, expires)
        .await?;
    Ok(Tokens {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: st.tokens.ttl().as_secs(),
    })
}

/// Register a new account; returns the user and a session.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn register(
    State(st): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<AuthResponse>)> {
    let mut errs = FieldErrors::new();
    let username = errs.required("username", req.username.as_deref(), Username::parse);
    let email = errs.required("email", req.email.as_deref(), Email::parse);
    let password = errs.required("password", req.password.as_deref(), Password::parse);
    let full_name = errs.optional("fullName", req.full_name.as_deref(), FullName::parse);
    let (Some(username), Some(email), Some(password), true) =
        (username, email, password, errs.is_empty())
    else {
        return Err(errs.into());
    };
    let hash = st
        .hash_password(password.expose().to_owned())
        .await
        .map_err(ApiError::hashing)?;
    let user = st
        .store
        .create_user(NewUser {
            username: username.as_str(),
            email: email.as_str(),
            password_hash: &hash,
            full_name: full_name.as_ref().map(|n| n.as_str()),
        })
        .await
        .map_err(conflict_to_api)?;
    let tokens = issue(&st, user.id, Uuid::now_v7()).await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((
        StatusCode::CREATED,
        axum::Json(AuthResponse { user, tokens }),
    ))
}

/// Maps a unique-key violation on users to a 409 naming the field.
pub(crate) fn conflict_to_api(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(key) if key.contains("email") => ApiError::Conflict {
            code: "CONFLICT",
            message: "email is already registered".into(),
        },
        StoreError::Conflict(key) if key.contains("username") => ApiError::Conflict {
            code: "CONFLICT",
            message: "username is already taken".into(),
        },
        e => e.into(),
    }
}

/// Log in with e-mail or username and password. Limited per account and per client address.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> Result<axum::Json<AuthResponse>> {
    let mut errs = FieldErrors::new();
    let login = req.login.or(req.email).or(req.username);
    if login.as_deref().is_none_or(|l| l.trim().is_empty()) {
        errs.add("login", "is required (e-mail or username)");
    }
    if login.as_deref().is_some_and(|l| l.chars().count() > 254) {
        // No username or e-mail is longer; refusing here keeps huge strings out of keys and queries.
        errs.add("login", "must be at most 254 characters");
    }
    if req.password.as_deref().is_none_or(str::is_empty) {
        errs.add("password", "is required");
    } else if req
        .password
        .as_deref()
        .is_some_and(|p| p.chars().count() > 1024)
    {
        errs.add("password", "must be at most 1024 characters");
    }
    let (Some(login), Some(password), true) = (login, req.password, errs.is_empty()) else {
        return Err(errs.into());
    };
    // The per-address budget needs no lookup, so it goes first: a flooder already refused costs no query.
    let window = st.config.login_rate_window;
    let keys = st.bus.keys();
    let limited = |d: chat_bus::RateDecision| {
        tracing::warn!(%ip, "login rate limited");
        ApiError::RateLimited {
            retry_after: d.retry_after,
        }
    };
    let per_ip = keys.rate_limit("login:ip", &ip.to_string());
    let d = st
        .bus
        .hit_rate_limit(&per_ip, st.config.login_attempts_per_ip, window)
        .await?;
    if !d.allowed {
        return Err(limited(d));
    }
    // The account budgets are keyed by the account the login resolves to, not by the text typed: the
    // lookup's collation treats `àlice` or `al\u{200b}ice` as `alice`, so keying by text would give each
    // spelling a fresh budget. Unknown logins share one budget per normalised text.
    let user = st.store.user_by_login(&login).await?;
    let account = match &user {
        Some(u) => u.id.to_string(),
        None => format!("unknown:{}", login.trim().to_lowercase()),
    };
    for (key, limit) in [
        (
            keys.rate_limit("login:acct_ip", &format!("{account}:{ip}")),
            st.config.login_attempts_per_account,
        ),
        (
            keys.rate_limit("login:acct", &account),
            st.config.login_attempts_per_account_total,
        ),
    ] {
        let d = st.bus.hit_rate_limit(&key, limit, window).await?;
        if !d.allowed {
            return Err(limited(d));
        }
    }
    let ok = st
        .verify_password(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
        .map_err(ApiError::hashing)?;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(%ip, "failed login");
        return Err(ApiError::Unauthorized("invalid credentials"));
    };
    let tokens = issue(&st, user.id, Uuid::now_v7()).await?;
    Ok(axum::Json(AuthResponse { user, tokens }))
}

/// Exchange a refresh token for a new session. The token is single-use: presenting it again revokes
/// every token issued from the same login.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Tokens), (status = 401, body = ErrorBody)))]
async fn refresh(
    State(st): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<Tokens>> {
    let Some(token) = req.refresh_token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::field("refreshToken", "is required"));
    };
    let old = chat_auth::hash_refresh_token(&token);
    let (new_token, new_hash) = chat_auth::new_refresh_token();
    let now = Utc::now();
    match st
        .store
        .rotate_refresh_token(&old, &new_hash, now + st.config.refresh_token_ttl)
        .await?
    {
        Rotation::Invalid => Err(ApiError::Unauthorized("invalid refresh token")),
        Rotation::Reused { user_id, family_id } => {
            tracing::warn!(%user_id, %family_id, "refresh token reuse: family revoked");
            Err(ApiError::Unauthorized(
                "refresh token already used; the session has been revoked",
            ))
        }
        Rotation::Rotated { user_id, .. } => {
            let (access_token, _) = st.tokens.issue(user_id, now).map_err(ApiError::internal)?;
            Ok(axum::Json(Tokens {
                access_token,
                refresh_token: new_token,
                token_type: "Bearer",
                expires_in: st.tokens.ttl().as_secs(),
            }))
        }
    }
}

/// End the session: the access token is revoked until it expires, and the refresh token's family (when
/// given) is revoked.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = Option<RefreshRequest>,
    security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(st): State<AppState>,
    user: AuthUser,
    OptionalJson(req): OptionalJson<RefreshRequest>,
) -> Result<StatusCode> {
    let ttl = std::time::Duration::from_secs(user.claims.remaining_secs(Utc::now()) + 5);
    st.bus.revoke_jti(user.id, user.claims.jti, ttl).await?;
    if let Some(token) = req.refresh_token.filter(|t| !t.is_empty()) {
        match st
            .store
            .revoke_refresh_family(user.id, &chat_auth::hash_refresh_token(&token))
            .await
        {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(user_id = %user.id, "logged out");
    st.announce(chat_realtime::Control::TokenRevoked {
        user: user.id,
        jti: Some(user.claims.jti),
    })
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The authenticated user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn me(State(st): State<AppState>, user: AuthUser) -> Result<axum::Json<User>> {
    match st.store.user_by_id(user.id).await {
        Ok(u) => Ok(axum::Json(u)),
        Err(StoreError::NotFound) => Err(ApiError::Unauthorized("unknown user")),
        Err(e) => Err(e.into()),
    }
}
