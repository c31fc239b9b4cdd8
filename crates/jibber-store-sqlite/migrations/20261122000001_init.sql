-- Jibber schema, SQLite. Times are Unix milliseconds; ids are UUIDv7 text.

CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,
    username            TEXT NOT NULL,
    username_lower      TEXT NOT NULL UNIQUE,
    email               TEXT,
    display_name        TEXT,
    registration_record BLOB NOT NULL,
    public_id_key       BLOB NOT NULL,
    public_signing_key  BLOB NOT NULL,
    key_bundle          BLOB NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen           INTEGER,
    -- The last cursor of this user's change feed (user_changes.seq).
    change_seq          INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE UNIQUE INDEX users_email_lower ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE pending_logins (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT REFERENCES users (id) ON DELETE CASCADE,
    state      BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX pending_logins_expiry ON pending_logins (expires_at);

CREATE TABLE refresh_tokens (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER,
    revoked_at INTEGER
) STRICT;

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- A 1:1 chat; the pair is stored ordered so that it is unique whoever created it.
CREATE TABLE chats (
    id         TEXT PRIMARY KEY NOT NULL,
    user_low   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    next_seq   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_low, user_high),
    CHECK (user_low < user_high)
) STRICT;

CREATE INDEX chats_user_high ON chats (user_high);

CREATE TABLE chat_members (
    chat_id       TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    unread_count  INTEGER NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    last_activity INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX chat_members_by_activity ON chat_members (user_id, last_activity DESC, chat_id DESC);
CREATE INDEX chat_members_other ON chat_members (other_id);

CREATE TABLE messages (
    id                        TEXT PRIMARY KEY NOT NULL,
    chat_id                   TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq                       INTEGER NOT NULL CHECK (seq >= 1),
    sender_id                 TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    receiver_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cipher                    BLOB NOT NULL,
    iv                        BLOB NOT NULL,
    signature                 BLOB NOT NULL,
    sender_public_id_key      BLOB NOT NULL,
    sender_public_signing_key BLOB NOT NULL,
    receiver_public_id_key    BLOB NOT NULL,
    client_timestamp          INTEGER NOT NULL,
    temp_message_id           TEXT NOT NULL,
    -- 0 when the receiver had the chat open on some device: it never counted as unread.
    counts_unread             INTEGER NOT NULL DEFAULT 1 CHECK (counts_unread IN (0, 1)),
    status                    TEXT NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'delivered', 'read')),
    created_at                INTEGER NOT NULL,
    delivered_at              INTEGER,
    read_at                   INTEGER,
    UNIQUE (chat_id, seq),
    UNIQUE (sender_id, temp_message_id)
) STRICT;

-- Unread messages of a receiver in a chat (mark-read and the recount).
CREATE INDEX messages_unread ON messages (chat_id, receiver_id, seq) WHERE status <> 'read';
CREATE INDEX messages_receiver ON messages (receiver_id);

-- Each user's change feed: what a client that was offline must learn, in order.
CREATE TABLE user_changes (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('message', 'delivered', 'read', 'chat')),
    chat_id    TEXT NOT NULL,
    message_id TEXT,
    actor_id   TEXT,
    up_to_seq  INTEGER,
    at         INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) STRICT, WITHOUT ROWID;
