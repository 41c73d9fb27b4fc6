-- Users. Ids are UUIDv7 in BINARY(16) (time-ordered, so inserts append to the primary key index).
-- username and email are unique case-insensitively (the collation is *_ci); email is also stored lowercased.
CREATE TABLE users (
    id            BINARY(16)   NOT NULL,
    username      VARCHAR(32)  NOT NULL,
    email         VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    full_name     VARCHAR(100) NULL,
    last_seen     DATETIME(3)  NULL,
    created_at    DATETIME(3)  NOT NULL,
    updated_at    DATETIME(3)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_users_username (username),
    UNIQUE KEY uq_users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
