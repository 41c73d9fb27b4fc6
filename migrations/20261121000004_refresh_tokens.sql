-- Refresh tokens: only the SHA-256 of the random token is stored. Tokens rotate on every use; all tokens
-- issued from one login share a family_id, so presenting an already-used token revokes the whole family.
CREATE TABLE refresh_tokens (
    id         BINARY(16)  NOT NULL,
    user_id    BINARY(16)  NOT NULL,
    family_id  BINARY(16)  NOT NULL,
    token_hash BINARY(32)  NOT NULL,
    created_at DATETIME(3) NOT NULL,
    expires_at DATETIME(3) NOT NULL,
    used_at    DATETIME(3) NULL,
    revoked_at DATETIME(3) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_refresh_tokens_hash (token_hash),
    KEY ix_refresh_tokens_family (family_id),
    KEY ix_refresh_tokens_user (user_id),
    CONSTRAINT fk_refresh_tokens_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
