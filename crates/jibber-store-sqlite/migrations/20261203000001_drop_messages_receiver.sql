-- The index on messages.receiver_id served only foreign-key cascades from users, which no
-- operation performs (accounts are never deleted through the API; chats cascade their
-- messages through chat_id). Each batch of sends paid a leaf write per receiver for it.
-- Deleting a user row by hand still works; SQLite then scans messages for the receiver.
DROP INDEX IF EXISTS messages_receiver;
