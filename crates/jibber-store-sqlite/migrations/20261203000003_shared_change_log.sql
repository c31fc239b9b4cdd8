-- A change is stored once, however many feeds it is in. A message was two full feed rows (one
-- in each member's feed, ~170 bytes each, in the middle of each user's key range) and its
-- delivery a third; each batch rewrote about one user_changes page per user it touched, half
-- of all the pages a relay batch wrote (BENCHMARKS.md, session 7). Now the change is one row
-- appended to `changes` (consecutive rows share pages) and each feed holds a ~50-byte entry
-- pointing at it.
CREATE TABLE changes (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind = 'message' OR kind = 'delivered' OR kind = 'read' OR kind = 'chat'),
    chat_id    TEXT NOT NULL,
    message_id TEXT,
    actor_id   TEXT,
    up_to_seq  INTEGER,
    at         INTEGER NOT NULL
) STRICT;

-- Each user's change feed: what a client that was offline must learn, in order
-- (users.change_seq is the last seq given out).
CREATE TABLE user_feed (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    change_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) STRICT, WITHOUT ROWID;

-- The feeds so far: each old row becomes a change of its own (both numbered in the table's
-- key order).
INSERT INTO changes (id, kind, chat_id, message_id, actor_id, up_to_seq, at)
SELECT row_number() OVER (ORDER BY user_id, seq), kind, chat_id, message_id, actor_id, up_to_seq, at
  FROM user_changes;

INSERT INTO user_feed (user_id, seq, change_id)
SELECT user_id, seq, row_number() OVER (ORDER BY user_id, seq) FROM user_changes;

DROP TABLE user_changes;

-- The feed as it read before, for tools and ad-hoc queries (`jibber migrate` copies it).
CREATE VIEW user_changes AS
SELECT f.user_id AS user_id, f.seq AS seq, c.kind AS kind, c.chat_id AS chat_id,
       c.message_id AS message_id, c.actor_id AS actor_id, c.up_to_seq AS up_to_seq, c.at AS at
  FROM user_feed f JOIN changes c ON c.id = f.change_id;
