-- Feeds keyed by a small integer instead of the user's 36-character id.
--
-- Every relay batch appends to the feed of each user it touches, so it rewrites at least one
-- `user_feed` leaf per user, and a leaf of ~48-byte rows (the id text, seq, change) filled and
-- split every few batches: `user_feed` was 40 % of the pages a batch wrote (BENCHMARKS.md,
-- session 9). An entry keyed by an integer is ~10 bytes, so leaves split about five times less
-- often and comparisons are integer ones.
--
-- Each user's feed cursor moves from `users.change_seq` to this table too: a batch rewrote the
-- row of every user it touched, and a users row (keys, registration record, sealed key bundle)
-- is most of a page; a `feeds` row is a dozen bytes.
--
-- `num` is an INTEGER PRIMARY KEY, so it is a stable rowid alias (VACUUM keeps it); the users'
-- own implicit rowids are not stable and cannot be used for this.
CREATE TABLE feeds (
    num      INTEGER PRIMARY KEY,
    user_id  TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    -- The last seq given out in this feed.
    last_seq INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO feeds (user_id, last_seq) SELECT id, change_seq FROM users ORDER BY id;

-- Every account gets its feed in the statement that creates it, whatever inserts it.
CREATE TRIGGER users_feed AFTER INSERT ON users
BEGIN
    INSERT INTO feeds (user_id) VALUES (new.id);
END;

CREATE TABLE user_feed_by_num (
    feed      INTEGER NOT NULL REFERENCES feeds (num) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    change_id INTEGER NOT NULL,
    PRIMARY KEY (feed, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO user_feed_by_num (feed, seq, change_id)
SELECT f.num, uf.seq, uf.change_id FROM user_feed uf JOIN feeds f ON f.user_id = uf.user_id
 ORDER BY f.num, uf.seq;

DROP VIEW user_changes;
DROP TABLE user_feed;
ALTER TABLE user_feed_by_num RENAME TO user_feed;
ALTER TABLE users DROP COLUMN change_seq;

-- The feed as it read before, for tools and ad-hoc queries (`jibber migrate-data` copies it).
CREATE VIEW user_changes AS
SELECT o.user_id AS user_id, f.seq AS seq, c.kind AS kind, c.chat_id AS chat_id,
       c.message_id AS message_id, c.actor_id AS actor_id, c.up_to_seq AS up_to_seq, c.at AS at
  FROM user_feed f JOIN feeds o ON o.num = f.feed JOIN changes c ON c.id = f.change_id;
