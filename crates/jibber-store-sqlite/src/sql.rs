//! The statements the store runs. Kept here so the query-plan tests check the same text.

use std::sync::LazyLock;

/// The message columns, in the order [`message_columns`] selects them (the read pool decodes
/// them by position).
pub const MESSAGE_COLUMNS: [&str; 17] = [
    "id",
    "chat_id",
    "seq",
    "sender_id",
    "receiver_id",
    "cipher",
    "iv",
    "signature",
    "sender_public_id_key",
    "sender_public_signing_key",
    "receiver_public_id_key",
    "client_timestamp",
    "temp_message_id",
    "status",
    "created_at",
    "delivered_at",
    "read_at",
];

/// The message columns of table alias `t`, each renamed `{prefix}{column}`.
pub fn message_columns(t: &str, prefix: &str) -> String {
    MESSAGE_COLUMNS
        .iter()
        .map(|c| format!("{t}.{c} AS {prefix}{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub const INSERT_USER: &str = "INSERT INTO users (id, username, username_lower, email, display_name, \
     registration_record, public_id_key, public_signing_key, key_bundle, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

pub const USER_BY_USERNAME: &str = "SELECT * FROM users WHERE username_lower = ?1";
pub const USER_BY_ID: &str = "SELECT * FROM users WHERE id = ?1";

/// Other users in username order after a cursor, optionally filtered by a LIKE pattern.
pub const CONTACTS: &str = "SELECT id, username, display_name, public_id_key, public_signing_key, last_seen \
     FROM users \
     WHERE username_lower > ?2 AND id <> ?1 \
       AND (?3 IS NULL OR username_lower LIKE ?3 ESCAPE '\\' OR lower(coalesce(display_name, '')) LIKE ?3 ESCAPE '\\') \
     ORDER BY username_lower LIMIT ?4";

pub const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Spends a live refresh token; returns nothing if it is spent, revoked, expired or unknown.
pub const SPEND_REFRESH: &str = "UPDATE refresh_tokens SET spent_at = ?2 \
     WHERE token_hash = ?1 AND spent_at IS NULL AND revoked_at IS NULL AND expires_at > ?2 \
     RETURNING user_id, family_id";

pub const REFRESH_BY_HASH: &str = "SELECT user_id, family_id, expires_at, spent_at, revoked_at \
     FROM refresh_tokens WHERE token_hash = ?1";

pub const REVOKE_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = ?2 WHERE family_id = ?1 AND revoked_at IS NULL";

pub const CHAT_PEERS: &str = "SELECT other_id FROM chat_members WHERE user_id = ?1";

pub const IS_MEMBER: &str = "SELECT count(*) FROM chat_members WHERE chat_id = ?1 AND user_id = ?2";

/// The position of the first message column in [`CHAT_SELECT`].
pub const CHAT_SELECT_MESSAGE_AT: usize = 11;

/// A user's chats with the other member and the last message, in one statement. Callers
/// append `WHERE me.user_id = ?1 ...`. The read pool decodes its columns by position.
pub static CHAT_SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT me.chat_id AS chat_id, me.unread_count AS unread_count, me.last_activity AS last_activity, \
                c.created_at AS c_created_at, c.next_seq AS next_seq, \
                u.id AS u_id, u.username AS u_username, u.display_name AS u_display_name, \
                u.public_id_key AS u_public_id_key, u.public_signing_key AS u_public_signing_key, \
                u.last_seen AS u_last_seen, {} \
         FROM chat_members me \
         JOIN chats c ON c.id = me.chat_id \
         JOIN users u ON u.id = me.other_id \
         LEFT JOIN messages m ON m.chat_id = me.chat_id AND m.seq = c.next_seq - 1",
        message_columns("m", "m_")
    )
});

/// The first page of a chat list, as `list_chats` runs it (`?2`: the page size).
pub static CHAT_LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE me.user_id = ?1 ORDER BY me.last_activity DESC, me.chat_id DESC LIMIT ?2",
        CHAT_SELECT.as_str()
    )
});

/// A later page of a chat list: after the cursor (`?2` activity in ms, `?3` chat id).
pub static CHAT_LIST_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE me.user_id = ?1 AND (me.last_activity, me.chat_id) < (?2, ?3) \
         ORDER BY me.last_activity DESC, me.chat_id DESC LIMIT ?4",
        CHAT_SELECT.as_str()
    )
});

/// The first message of a (sender, tempMessageId), for the batch writer's repeat check.
pub const MESSAGE_ID_BY_TEMP_ID: &str =
    "SELECT id, chat_id FROM messages WHERE sender_id = ?1 AND temp_message_id = ?2";

/// A chat's next sequence number and its members (one row per member, with the other one;
/// no row: no such chat), read once per batch by the batch writer (which is the only writer
/// while it runs). The counter is written back with [`SET_NEXT_SEQ`].
pub const CHAT_SEQ_AND_MEMBERS: &str = "SELECT c.next_seq, m.user_id, m.other_id \
     FROM chats c JOIN chat_members m ON m.chat_id = c.id WHERE c.id = ?1";

pub const SET_NEXT_SEQ: &str = "UPDATE chats SET next_seq = ?2, updated_at = ?3 WHERE id = ?1";

pub const INSERT_MESSAGE: &str = "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
     sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, temp_message_id, created_at, counts_unread) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT (sender_id, temp_message_id) DO NOTHING";

/// Moves both members' activity and adds a batch's unread messages to each member's count
/// (`?3` gets `?4` more, `?5` gets `?6` more).
pub const TOUCH_MEMBERS: &str = "UPDATE chat_members SET last_activity = ?2, \
     unread_count = unread_count + (CASE user_id WHEN ?3 THEN ?4 WHEN ?5 THEN ?6 ELSE 0 END) \
     WHERE chat_id = ?1";

pub static HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM messages m WHERE m.chat_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
        message_columns("m", "")
    )
});

pub static SINCE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM messages m WHERE m.chat_id = ?1 AND m.seq > ?2 ORDER BY m.seq ASC LIMIT ?3",
        message_columns("m", "")
    )
});

/// A message `?2` received and has not acknowledged yet: its row, chat, sequence and sender.
/// The batch writer then marks it with [`MARK_DELIVERED`]: two statements, because `RETURNING`
/// would collect its rows in a temporary table built for every receipt.
pub const UNDELIVERED: &str = "SELECT rowid, chat_id, seq, sender_id FROM messages \
     WHERE id = ?1 AND receiver_id = ?2 AND status = 'sent'";

pub const MARK_DELIVERED: &str =
    "UPDATE messages SET status = 'delivered', delivered_at = ?2 WHERE rowid = ?1";

/// The reader's other member, its read floor (every message it received at or below the floor
/// is read: the marks below start there) and the chat's last sequence number.
pub const READ_FLOOR: &str = "SELECT me.other_id, me.last_read_seq, c.next_seq - 1 \
     FROM chat_members me JOIN chats c ON c.id = me.chat_id \
     WHERE me.chat_id = ?1 AND me.user_id = ?2";

/// Marks the reader's messages after its read floor (`?5`) up to `?3` read: a range of the
/// chat's (chat_id, seq) index.
pub const MARK_READ: &str = "UPDATE messages SET status = 'read', read_at = ?4, delivered_at = coalesce(delivered_at, ?4) \
     WHERE chat_id = ?1 AND seq > ?5 AND seq <= ?3 AND receiver_id = ?2 AND status <> 'read'";

/// Sets the reader's new read floor `?3` and its unread count from the messages after it, in
/// the same transaction as the marks.
pub const RECOUNT_UNREAD: &str = "UPDATE chat_members SET last_read_seq = ?3, \
     unread_count = (SELECT count(*) FROM messages WHERE chat_id = ?1 AND seq > ?3 \
         AND receiver_id = ?2 AND status <> 'read' AND counts_unread = 1) \
     WHERE chat_id = ?1 AND user_id = ?2 RETURNING unread_count";

/// Gives out the next seq of a user's feed: the feed's number and that seq.
pub const BUMP_CHANGE_SEQ: &str =
    "UPDATE feeds SET last_seq = last_seq + 1 WHERE user_id = ?1 RETURNING num, last_seq";

/// A user's feed number and cursor, read once per batch by the batch writer and written back
/// with [`SET_CHANGE_SEQ`].
pub const CHANGE_SEQ: &str = "SELECT num, last_seq FROM feeds WHERE user_id = ?1";

/// `?1`: the feed's number.
pub const SET_CHANGE_SEQ: &str = "UPDATE feeds SET last_seq = ?2 WHERE num = ?1";

/// A change, stored once; each feed it is in gets an [`INSERT_FEED_ENTRY`] pointing at it.
pub const INSERT_CHANGE: &str = "INSERT INTO changes (kind, chat_id, message_id, actor_id, up_to_seq, at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// `?1`: the feed's number ([`CHANGE_SEQ`]). A new entry goes to the tail (see the migration
/// `feed_tail`); its rowid is the tail's length.
pub const INSERT_FEED_ENTRY: &str =
    "INSERT INTO feed_tail (feed, seq, change_id) VALUES (?1, ?2, ?3)";

/// How many entries the feed tail holds before the transaction that reached this many moves it
/// into `user_feed` ([`MOVE_FEED_TAIL`]). Each move writes about one `user_feed` leaf per user
/// in the tail, once for all the batches since the last move; the tail and its index stay a
/// few dozen pages.
pub const FEED_TAIL_MAX: i64 = 4096;

/// Moves the whole tail into `user_feed`, in key order, and empties it (so the next entry's
/// rowid is 1 again). Two statements, run in the transaction that reached [`FEED_TAIL_MAX`].
pub const MOVE_FEED_TAIL: [&str; 2] = [
    "INSERT INTO user_feed (feed, seq, change_id) \
     SELECT feed, seq, change_id FROM feed_tail ORDER BY feed, seq",
    "DELETE FROM feed_tail",
];

/// A user's feed entries in `user_feed`, which all come before the ones in the tail
/// ([`FEED_TAIL`] reads those): `?1` the user, `?2` the cursor, `?3` the limit.
pub const FEED: &str = "SELECT f.seq AS seq, c.kind AS kind, c.chat_id AS chat_id, c.message_id AS message_id, \
     c.actor_id AS actor_id, c.up_to_seq AS up_to_seq, c.at AS at \
     FROM user_feed f JOIN changes c ON c.id = f.change_id \
     WHERE f.feed = (SELECT num FROM feeds WHERE user_id = ?1) AND f.seq > ?2 ORDER BY f.seq LIMIT ?3";

/// The same as [`FEED`] from the tail, through its index `feed_tail_by_feed`.
pub const FEED_TAIL: &str = "SELECT f.seq AS seq, c.kind AS kind, c.chat_id AS chat_id, c.message_id AS message_id, \
     c.actor_id AS actor_id, c.up_to_seq AS up_to_seq, c.at AS at \
     FROM feed_tail f JOIN changes c ON c.id = f.change_id \
     WHERE f.feed = (SELECT num FROM feeds WHERE user_id = ?1) AND f.seq > ?2 ORDER BY f.seq LIMIT ?3";

/// The statements the batch writer runs for every send and receipt, and the mark-read, by
/// name: none may build a temporary table (tests/query_plans.rs).
pub fn hot_writes() -> Vec<(&'static str, &'static str)> {
    vec![
        ("message_id_by_temp_id", MESSAGE_ID_BY_TEMP_ID),
        ("chat_seq_and_members", CHAT_SEQ_AND_MEMBERS),
        ("insert_message", INSERT_MESSAGE),
        ("change_seq", CHANGE_SEQ),
        ("insert_change", INSERT_CHANGE),
        ("insert_feed_entry", INSERT_FEED_ENTRY),
        ("undelivered", UNDELIVERED),
        ("mark_delivered", MARK_DELIVERED),
        ("set_change_seq", SET_CHANGE_SEQ),
        ("set_next_seq", SET_NEXT_SEQ),
        ("touch_members", TOUCH_MEMBERS),
        ("mark_read", MARK_READ),
    ]
}

/// The statements whose plans must use an index, by name (see tests/query_plans.rs).
pub fn hot_queries() -> Vec<(&'static str, String)> {
    vec![
        ("user_by_username", USER_BY_USERNAME.to_owned()),
        ("refresh_by_hash", REFRESH_BY_HASH.to_owned()),
        ("spend_refresh", SPEND_REFRESH.to_owned()),
        ("chat_list", CHAT_LIST.clone()),
        ("chat_list_after", CHAT_LIST_AFTER.clone()),
        ("message_id_by_temp_id", MESSAGE_ID_BY_TEMP_ID.to_owned()),
        ("history", HISTORY.clone()),
        ("since", SINCE.clone()),
        ("read_floor", READ_FLOOR.to_owned()),
        ("mark_read", MARK_READ.to_owned()),
        ("recount_unread", RECOUNT_UNREAD.to_owned()),
        ("undelivered", UNDELIVERED.to_owned()),
        ("mark_delivered", MARK_DELIVERED.to_owned()),
        ("feed", FEED.to_owned()),
        ("feed_tail", FEED_TAIL.to_owned()),
        ("chat_seq_and_members", CHAT_SEQ_AND_MEMBERS.to_owned()),
        ("set_next_seq", SET_NEXT_SEQ.to_owned()),
        ("touch_members", TOUCH_MEMBERS.to_owned()),
        ("change_seq", CHANGE_SEQ.to_owned()),
        ("set_change_seq", SET_CHANGE_SEQ.to_owned()),
        ("is_member", IS_MEMBER.to_owned()),
        ("chat_peers", CHAT_PEERS.to_owned()),
        ("contacts", CONTACTS.to_owned()),
    ]
}
