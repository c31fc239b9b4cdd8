-- Jibber schema, PostgreSQL. The same tables as the SQLite backend, in native types:
-- ids are uuid (UUIDv7 from the application), keys and ciphertexts bytea, times timestamptz
-- (the store truncates them to milliseconds, the precision of the SQLite backend and of the
-- chat-list cursor), counters bigint.
--
-- Unique constraints carry explicit names: the store tells them apart by name (a taken username
-- or e-mail, a repeated (sender, tempMessageId)).

CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    username            text NOT NULL,
    -- Lower-cased by the store (Unicode, as on SQLite). Collation "C" so that its order and the
    -- contacts cursor compare bytes, as SQLite does, whatever the database's locale.
    username_lower      text COLLATE "C" NOT NULL,
    email               text,
    display_name        text,
    registration_record bytea NOT NULL,
    public_id_key       bytea NOT NULL,
    public_signing_key  bytea NOT NULL,
    key_bundle          bytea NOT NULL,
    created_at          timestamptz NOT NULL,
    last_seen           timestamptz,
    -- The last cursor of this user's change feed (user_changes.seq).
    change_seq          bigint NOT NULL DEFAULT 0,
    CONSTRAINT users_username_lower_key UNIQUE (username_lower)
);

CREATE UNIQUE INDEX users_email_lower ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE pending_logins (
    id         uuid PRIMARY KEY,
    user_id    uuid REFERENCES users (id) ON DELETE CASCADE,
    state      bytea NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX pending_logins_expiry ON pending_logins (expires_at);
CREATE INDEX pending_logins_user ON pending_logins (user_id);

CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid NOT NULL,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz,
    revoked_at timestamptz,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);

-- A 1:1 chat; the pair is stored ordered so that it is unique whoever created it.
CREATE TABLE chats (
    id         uuid PRIMARY KEY,
    user_low   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The sequence number the next message gets. Its row lock serializes a chat's senders.
    next_seq   bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT chats_pair_key UNIQUE (user_low, user_high),
    CHECK (user_low < user_high)
);

CREATE INDEX chats_user_high ON chats (user_high);

CREATE TABLE chat_members (
    chat_id       uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    other_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    unread_count  bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    last_read_seq bigint NOT NULL DEFAULT 0,
    last_activity timestamptz NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

CREATE INDEX chat_members_by_activity ON chat_members (user_id, last_activity DESC, chat_id DESC);
CREATE INDEX chat_members_other ON chat_members (other_id);

CREATE TABLE messages (
    id                        uuid PRIMARY KEY,
    chat_id                   uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq                       bigint NOT NULL CHECK (seq >= 1),
    sender_id                 uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    receiver_id               uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cipher                    bytea NOT NULL,
    iv                        bytea NOT NULL,
    signature                 bytea NOT NULL,
    sender_public_id_key      bytea NOT NULL,
    sender_public_signing_key bytea NOT NULL,
    receiver_public_id_key    bytea NOT NULL,
    client_timestamp          timestamptz NOT NULL,
    temp_message_id           text NOT NULL,
    -- False when the receiver had the chat open on some device: it never counted as unread.
    counts_unread             boolean NOT NULL DEFAULT true,
    status                    text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent', 'delivered', 'read')),
    created_at                timestamptz NOT NULL,
    delivered_at              timestamptz,
    read_at                   timestamptz,
    CONSTRAINT messages_chat_seq_key UNIQUE (chat_id, seq),
    CONSTRAINT messages_sender_temp_key UNIQUE (sender_id, temp_message_id)
);

-- Unread messages of a receiver in a chat (mark-read and the recount).
CREATE INDEX messages_unread ON messages (chat_id, receiver_id, seq) WHERE status <> 'read';
CREATE INDEX messages_receiver ON messages (receiver_id);

-- Each user's change feed: what a client that was offline must learn, in order.
CREATE TABLE user_changes (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('message', 'delivered', 'read', 'chat')),
    chat_id    uuid NOT NULL,
    message_id uuid,
    actor_id   uuid,
    up_to_seq  bigint,
    at         timestamptz NOT NULL,
    PRIMARY KEY (user_id, seq)
);
