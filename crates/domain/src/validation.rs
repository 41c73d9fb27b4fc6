//! Validated value types. Each has a `parse` that either returns the value or a human-readable reason;
//! [`FieldErrors`] collects the reasons per field so an API can answer with all of them at once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The longest message body accepted, in Unicode scalar values (what users think of as characters).
pub const MAX_MESSAGE_CHARS: usize = 4_000;

fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

macro_rules! string_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_type!(
    /// 3–32 characters of letters, digits, `_`, `.` or `-`, starting with a letter or digit.
    Username
);
string_type!(
    /// A syntactically plausible e-mail address, trimmed and lowercased.
    Email
);
string_type!(
    /// A display name: at most 100 characters, no control characters.
    FullName
);
string_type!(
    /// A room name: 1–100 characters after trimming, no control characters.
    RoomName
);
string_type!(
    /// A room description: at most 500 characters.
    RoomDescription
);
string_type!(
    /// A message body: not blank, at most [`MAX_MESSAGE_CHARS`] characters. Stored as sent.
    MessageContent
);
string_type!(
    /// A client-chosen idempotency key for a send: 1–64 printable ASCII characters.
    ClientMsgId
);

impl Username {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let n = s.chars().count();
        if !(3..=32).contains(&n) {
            return Err("must be 3 to 32 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'".into());
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err("must start with a letter or a digit".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_lowercase();
        if s.is_empty() || s.len() > 254 {
            return Err("must be a valid e-mail address of at most 254 characters".into());
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(Self(s))
        } else {
            Err("must be a valid e-mail address".into())
        }
    }
}

/// A password that meets the policy: 8–128 characters and not only whitespace. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self, String> {
        let n = s.chars().count();
        if n < 8 {
            return Err("must be at least 8 characters".into());
        }
        if n > 128 {
            return Err("must be at most 128 characters".into());
        }
        if s.trim().is_empty() {
            return Err("must not be only whitespace".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(**redacted**)")
    }
}

impl FullName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.chars().count() > 100 {
            return Err("must be at most 100 characters".into());
        }
        if has_control(s) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl RoomName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > 100 {
            return Err("must be at most 100 characters".into());
        }
        if has_control(s) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl RoomDescription {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.chars().count() > 500 {
            return Err("must be at most 500 characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl MessageContent {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > MAX_MESSAGE_CHARS {
            return Err(format!("must be at most {MAX_MESSAGE_CHARS} characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

impl ClientMsgId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be 1 to 64 printable ASCII characters".into());
        }
        Ok(Self(s.to_owned()))
    }
}

/// The kind of a message body.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    #[default]
    Text,
    Image,
    File,
}

impl MessageType {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "image" => Ok(Self::Image),
            "file" => Ok(Self::File),
            _ => Err("must be one of text, image, file".into()),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
        }
    }
}

/// A member's role in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomRole {
    Admin,
    Member,
}

impl RoomRole {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err("must be one of admin, member".into()),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// Validation failures keyed by field name (in the client's spelling, e.g. `fullName`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// Runs `parse` on a required field, recording "is required" or the parse error.
    pub fn required<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match value {
            None => {
                self.add(field, "is required");
                None
            }
            Some(v) => self.check(field, parse(v)),
        }
    }

    /// Runs `parse` on an optional field; absent is fine.
    pub fn optional<T>(
        &mut self,
        field: &str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        value.and_then(|v| self.check(field, parse(v)))
    }

    pub fn check<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// `Ok(())` when nothing failed, otherwise the collected errors.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.0 {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{k} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_policy() {
        assert!(Username::parse("alice_01").is_ok());
        assert_eq!(
            Username::parse("  bob  ").map(|u| u.into_inner()),
            Ok("bob".into())
        );
        assert!(Username::parse("al").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("_alice").is_err());
        assert!(Username::parse("ali ce").is_err());
        assert!(Username::parse("al<script>").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").map(|e| e.into_inner()),
            Ok("alice@example.com".into())
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn passwords_need_eight_characters_and_are_never_printed() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("        ").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let p = Password::parse("correct horse").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(**redacted**)");
    }

    #[test]
    fn message_content_is_non_blank_and_at_most_4000_characters() {
        assert!(MessageContent::parse("hi").is_ok());
        assert!(MessageContent::parse("").is_err());
        assert!(MessageContent::parse(" \n\t ").is_err());
        assert!(
            MessageContent::parse(&"é".repeat(4000)).is_ok(),
            "counted in characters, not bytes"
        );
        assert!(MessageContent::parse(&"x".repeat(4001)).is_err());
        let sql = "'; DROP TABLE messages; --";
        assert_eq!(
            MessageContent::parse(sql).map(|c| c.into_inner()),
            Ok(sql.into())
        );
    }

    #[test]
    fn room_names_and_types_and_roles_parse() {
        assert!(RoomName::parse("  General ").is_ok_and(|n| n.as_str() == "General"));
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse("a\u{0007}b").is_err());
        assert_eq!(MessageType::parse("image"), Ok(MessageType::Image));
        assert!(MessageType::parse("video").is_err());
        assert_eq!(RoomRole::parse("admin"), Ok(RoomRole::Admin));
        assert!(RoomRole::parse("owner").is_err());
        assert!(ClientMsgId::parse("abc-123").is_ok());
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse("with space").is_err());
    }

    #[test]
    fn field_errors_collect_every_failure() {
        let mut errs = FieldErrors::new();
        let u = errs.required("username", Some("x"), Username::parse);
        let e = errs.required("email", None, Email::parse);
        let n = errs.optional("fullName", None, FullName::parse);
        assert!(u.is_none() && e.is_none() && n.is_none());
        assert_eq!(errs.get("email"), Some("is required"));
        assert!(errs.get("username").is_some());
        assert!(errs.get("fullName").is_none());
        assert!(errs.into_result().is_err());
    }
}
