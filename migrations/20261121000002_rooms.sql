-- Rooms and their members. Every room has an invite code (a private room can only be joined with it;
-- a public room's code is a shareable link). Receipts are two cursors per member, not a row per message.
CREATE TABLE rooms (
    id          BINARY(16)   NOT NULL,
    name        VARCHAR(100) NOT NULL,
    description VARCHAR(500) NULL,
    is_private  BOOLEAN      NOT NULL DEFAULT FALSE,
    invite_code VARCHAR(32)  NOT NULL,
    created_by  BINARY(16)   NOT NULL,
    created_at  DATETIME(3)  NOT NULL,
    updated_at  DATETIME(3)  NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_rooms_invite_code (invite_code),
    KEY ix_rooms_public_name (is_private, name),
    CONSTRAINT fk_rooms_created_by FOREIGN KEY (created_by) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE room_members (
    room_id       BINARY(16)  NOT NULL,
    user_id       BINARY(16)  NOT NULL,
    role          VARCHAR(8)  NOT NULL DEFAULT 'member',
    joined_at     DATETIME(3) NOT NULL,
    read_seq      BIGINT      NOT NULL DEFAULT 0,
    delivered_seq BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id),
    KEY ix_room_members_user (user_id),
    CONSTRAINT ck_room_members_role CHECK (role IN ('admin', 'member')),
    CONSTRAINT fk_room_members_room FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT fk_room_members_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
