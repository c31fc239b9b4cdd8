-- Two fewer index entries per message (each was a B-tree leaf per chat rewritten by every
-- batch: a quarter of the pages a relay batch wrote, BENCHMARKS.md session 7).
--
-- messages_unread served mark-read and the unread recount. They now walk the chat's
-- (chat_id, seq) index from the reader's read floor, chat_members.last_read_seq, which from
-- here on means: every message of this chat that this member received with seq <= it is read.
-- Before, a mark-read with upToSequence beyond the chat's last message raised it past messages
-- that had not arrived yet; lower any such floor to just below the member's first unread
-- message (this runs while the index still exists).
UPDATE chat_members SET last_read_seq = coalesce(
    (SELECT min(m.seq) - 1 FROM messages m
      WHERE m.chat_id = chat_members.chat_id AND m.receiver_id = chat_members.user_id
        AND m.status <> 'read' AND m.seq <= chat_members.last_read_seq),
    last_read_seq);

DROP INDEX messages_unread;

-- messages_receiver served only the foreign key's ON DELETE CASCADE from users; no code path
-- deletes a user, and a user's chats (and with them their messages, by chat_id) go first when
-- one is deleted by hand.
DROP INDEX messages_receiver;
