-- Messages. `seq` is the per-room, gap-free sequence number allocated in Redis by the send script; history
-- pages by it. (room_id, sender_id, client_msg_id) makes a retried send idempotent even in MySQL; NULLs
-- (no client id) never collide. Deleted messages are soft-deleted: content NULL, deleted_at set.
CREATE TABLE messages (
    id            BINARY(16)  NOT NULL,
    room_id       BINARY(16)  NOT NULL,
    seq           BIGINT      NOT NULL,
    sender_id     BINARY(16)  NOT NULL,
    type          VARCHAR(8)  NOT NULL DEFAULT 'text',
    content       TEXT        NULL,
    client_msg_id VARCHAR(64) NULL,
    created_at    DATETIME(3) NOT NULL,
    edited_at     DATETIME(3) NULL,
    deleted_at    DATETIME(3) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_messages_room_seq (room_id, seq),
    UNIQUE KEY uq_messages_client_msg (room_id, sender_id, client_msg_id),
    CONSTRAINT ck_messages_type CHECK (type IN ('text', 'image', 'file')),
    CONSTRAINT fk_messages_room FOREIGN KEY (room_id) REFERENCES rooms (id) ON DELETE CASCADE,
    CONSTRAINT fk_messages_sender FOREIGN KEY (sender_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
