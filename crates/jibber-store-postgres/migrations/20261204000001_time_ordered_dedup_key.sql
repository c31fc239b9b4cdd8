-- The repeat check's unique key, (sender_id, temp_message_id), becomes
-- (temp_message_id, sender_id): the same rule with its columns swapped.
--
-- The clients make their tempMessageIds as UUIDv7, which begin with the time (the SDK, the web
-- client, the load generator). Keyed by sender first, each send landed at the end of its
-- sender's range: one B-tree leaf per sender, so a busy server dirtied a leaf per active
-- sender, and after every checkpoint each of those leaves cost a full-page image in the WAL.
-- Keyed by the tempMessageId first, new keys land together at the right edge of the index.
-- SQLite got the same change in its migration 20261204000002 (BENCHMARKS.md, session 16).
--
-- `ON CONFLICT (sender_id, temp_message_id)` names a set of columns, which the new constraint
-- matches whatever their order; the lookup of a repeat's first message (both columns by
-- equality) uses it as well. Building it holds a SHARE lock on messages (no writes) while it
-- reads the table: docs/operations.md gives the cost.
ALTER TABLE messages ADD CONSTRAINT messages_temp_sender_key UNIQUE (temp_message_id, sender_id);
ALTER TABLE messages DROP CONSTRAINT messages_sender_temp_key;
