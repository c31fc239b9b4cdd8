-- New feed entries land in a small table first and move to `user_feed` in bulk.
--
-- `user_feed` is keyed by (feed, seq), so each user's entries sit together and every batch
-- that appended to a user's feed rewrote that user's leaf: one 4 KiB page per user per batch,
-- for entries of about ten bytes. At 9,000 messages/s that was 35 % of the frames the WAL took
-- (BENCHMARKS.md, session 15). `feed_tail` is a rowid table: entries are appended in the order
-- they are given out, so a batch fills the same one or two pages whoever it is for. When the
-- tail reaches its bound (`FEED_TAIL_MAX` in the code) the transaction that reached it moves the
-- whole tail into `user_feed`, and each user's leaf is written once for all the batches since.
--
-- Every entry of the tail comes after every entry of the same feed in `user_feed` (the move
-- takes the whole tail, and new entries get higher seqs), so a feed is read from `user_feed`
-- first and then from the tail. The tail has no index: it holds a few thousand entries at most
-- and a reader scans it (a few pages).
--
-- When the tail is empty, the next entry's rowid is 1 (SQLite gives max(rowid) + 1), so an
-- entry's rowid is the length of the tail and the writers need no count of their own.
CREATE TABLE feed_tail (
    feed      INTEGER NOT NULL REFERENCES feeds (num) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    change_id INTEGER NOT NULL
) STRICT;

-- The feed as it read before, for tools and ad-hoc queries (`jibber migrate-data` copies it).
DROP VIEW user_changes;
CREATE VIEW user_changes AS
SELECT o.user_id AS user_id, f.seq AS seq, c.kind AS kind, c.chat_id AS chat_id,
       c.message_id AS message_id, c.actor_id AS actor_id, c.up_to_seq AS up_to_seq, c.at AS at
  FROM (SELECT feed, seq, change_id FROM user_feed
        UNION ALL
        SELECT feed, seq, change_id FROM feed_tail) f
  JOIN feeds o ON o.num = f.feed JOIN changes c ON c.id = f.change_id;
