-- The feed tail gets an index by feed, so a sync finds its entries without scanning the tail.
--
-- Scanning a full tail (4,096 entries) cost ~0.3 ms per sync; when 15,000 clients reconnect at
-- once, each syncs, and the storm took 25.4 s against 16.8–18.6 s before the tail
-- (BENCHMARKS.md, session 16). The index stays as small as the tail (~10 bytes an entry, about
-- a dozen leaves when full), so a batch that appends for a hundred users still writes a few
-- of its leaves, not one per user as `user_feed` did. It covers the sync's columns.
CREATE INDEX feed_tail_by_feed ON feed_tail (feed, seq, change_id);
