//! Authentication primitives: password hashing, access tokens and refresh tokens.
//!
//! - Passwords are hashed with **argon2id** using the OWASP recommended minimum (19 MiB memory, 2
//!   iterations, 1 lane), encoded as PHC strings so parameters can be raised later without a migration.
//! - Access tokens are **HS256 JWTs** with `sub` (user id), `jti` (unique, so one token can be revoked) and
//!   `exp` (15 minutes by default). Only HS256 is accepted when verifying, which also refuses `alg: none`.
//! - Refresh tokens are 256 random bits, given to the client once and stored only as their SHA-256; the
//!   storage crate rotates them and revokes whole families on reuse.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;

/// An authentication failure.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid token")]
    InvalidToken,
    #[error("token expired")]
    Expired,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Argon2id with the OWASP minimum: m = 19 MiB, t = 2, p = 1.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the user does not exist so that an unknown
    /// account takes as long to refuse as a wrong password.
    dummy_hash: String,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    pub fn new() -> Self {
        // The parameters are constants known to be valid.
        #[allow(clippy::expect_used)]
        let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        #[allow(clippy::expect_used)]
        let dummy_hash = argon
            .hash_password(Uuid::new_v4().to_string().as_bytes(), &salt)
            .expect("hashing a fixed-size input succeeds")
            .to_string();
        Self { argon, dummy_hash }
    }

    /// Hashes a password into a PHC string. CPU-heavy: call it off the async executor.
    ///
    /// # Errors
    /// Only if argon2 itself fails.
    pub fn hash(&self, password: &str) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hashing(e.to_string()))
    }

    /// Checks a password against a stored hash; `None` (unknown user) spends the same time and fails.
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let (stored, known) = match hash {
            Some(h) => (h, true),
            None => (self.dummy_hash.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        self.argon
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The token id, used to revoke this one token.
    pub jti: Uuid,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

impl Claims {
    /// Seconds until this token expires (0 if it already has).
    pub fn remaining_secs(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from(self.exp - now.timestamp()).unwrap_or(0)
    }
}

/// Issues and verifies HS256 access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(JwtAlg::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh access token for `user`, valid for the configured lifetime from `now`.
    ///
    /// # Errors
    /// Only if encoding fails (it does not with an HMAC key).
    pub fn issue(&self, user: Uuid, now: DateTime<Utc>) -> Result<(String, Claims), AuthError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user,
            jti: Uuid::now_v7(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl,
        };
        self.encode(&claims).map(|t| (t, claims))
    }

    /// Signs arbitrary claims (tests use it to make expired tokens).
    ///
    /// # Errors
    /// Only if encoding fails.
    pub fn encode(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(JwtAlg::HS256), claims, &self.encoding)
            .map_err(|_| AuthError::InvalidToken)
    }

    /// Verifies signature, algorithm and expiry.
    ///
    /// # Errors
    /// [`AuthError::Expired`] or [`AuthError::InvalidToken`].
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken,
            })
    }
}

/// A new refresh token: the string for the client and the hash to store.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The stored form of a refresh token.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A random invite code: 12 characters of URL-safe base64 (72 bits).
pub fn new_invite_code() -> String {
    let mut raw = [0u8; 9];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let h = PasswordHasher::new();
        let stored = h.hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse battery", Some(&stored)));
        assert!(!h.verify("wrong", Some(&stored)));
        assert!(!h.verify("correct horse battery", None));
        assert!(!h.verify("x", Some("not a phc string")));
    }

    #[test]
    fn access_tokens_round_trip_and_expire() {
        let keys = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        );
        let user = Uuid::now_v7();
        let (token, claims) = keys.issue(user, Utc::now()).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims);
        assert_eq!(claims.exp - claims.iat, 900);

        let old = Utc::now() - chrono::Duration::hours(1);
        let (expired, _) = keys.issue(user, old).unwrap();
        assert!(matches!(keys.verify(&expired), Err(AuthError::Expired)));
    }

    #[test]
    fn forged_tampered_and_unsigned_tokens_are_refused() {
        let keys = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        );
        let other = TokenKeys::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(900),
        );
        let (token, _) = other.issue(Uuid::now_v7(), Utc::now()).unwrap();
        assert!(keys.verify(&token).is_err(), "wrong key");

        let (good, _) = keys.issue(Uuid::now_v7(), Utc::now()).unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"{}","jti":"{}","iat":0,"exp":9999999999}}"#,
            Uuid::nil(),
            Uuid::nil()
        ));
        parts[1] = &forged_payload;
        assert!(keys.verify(&parts.join(".")).is_err(), "tampered payload");

        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{forged_payload}.");
        assert!(keys.verify(&unsigned).is_err(), "alg none");
        assert!(keys.verify("garbage").is_err());
        assert!(keys.verify("").is_err());
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, hb) = new_refresh_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash_refresh_token(&a), ha);
        assert_eq!(a.len(), 43);
        assert_eq!(new_invite_code().len(), 12);
    }
}
