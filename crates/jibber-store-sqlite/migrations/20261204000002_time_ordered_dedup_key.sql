-- The repeat check's unique index leads with the client's idempotency key instead of the
-- sender: UNIQUE (temp_message_id, sender_id), the same constraint with its columns swapped.
--
-- Keyed by sender first, each send went into its sender's part of the index, so every batch
-- rewrote one leaf per sender it held: 27 % of the WAL's frames in the relay at 4,000
-- messages/s once the feed tail had removed `user_feed`'s share (BENCHMARKS.md, session 16).
-- The clients make their keys UUIDv7 text (the Rust SDK, the web client since session 15),
-- which sorts by time: led by the key, every sender's new entries land together at the end of
-- the index, on one or two leaves per batch. A client with random keys costs a leaf per send
-- at worst, as any random key would.
--
-- SQLite cannot change a table's UNIQUE constraint in place, so the table is rebuilt
-- (https://sqlite.org/lang_altertable.html, "otheralter"): a new table, every row copied with
-- its rowid, the old one dropped and the new one renamed. No table references `messages` and
-- no view or trigger reads it, so the drop cascades nowhere. On a large database this copies
-- every message once, at the upgrade.
CREATE TABLE messages_new (
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
    counts_unread             INTEGER NOT NULL DEFAULT 1 CHECK (counts_unread = 0 OR counts_unread = 1),
    status                    TEXT NOT NULL DEFAULT 'sent' CHECK (status = 'sent' OR status = 'delivered' OR status = 'read'),
    created_at                INTEGER NOT NULL,
    delivered_at              INTEGER,
    read_at                   INTEGER,
    UNIQUE (chat_id, seq),
    UNIQUE (temp_message_id, sender_id)
) STRICT;

INSERT INTO messages_new (rowid, id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature,
                          sender_public_id_key, sender_public_signing_key, receiver_public_id_key,
                          client_timestamp, temp_message_id, counts_unread, status, created_at,
                          delivered_at, read_at)
SELECT rowid, id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature,
       sender_public_id_key, sender_public_signing_key, receiver_public_id_key,
       client_timestamp, temp_message_id, counts_unread, status, created_at,
       delivered_at, read_at
  FROM messages ORDER BY rowid;

DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
