//! Every statement the store runs, as a `const`, so the query-plan tests check the very text the
//! code runs. Parameters are `$n`; ids bind as `uuid`, times as `timestamptz`, lists of ids as
//! `uuid[]` (`= ANY($n)`), so no statement is built at run time.

/// The columns of a user row, in the order [`crate`] reads them by name.
macro_rules! user_columns {
    () => {
        "id, username, email, display_name, registration_record, public_id_key, \
         public_signing_key, key_bundle, created_at, last_seen"
    };
}

/// The message columns of alias `m`, under their own names.
macro_rules! message_columns {
    () => {
        "m.id, m.chat_id, m.seq, m.sender_id, m.receiver_id, m.cipher, m.iv, m.signature, \
         m.sender_public_id_key, m.sender_public_signing_key, m.receiver_public_id_key, \
         m.client_timestamp, m.temp_message_id, m.status, m.created_at, m.delivered_at, m.read_at"
    };
}

/// The message columns of alias `m`, renamed `m_<column>` (the last message of a chat row).
macro_rules! last_message_columns {
    () => {
        "m.id AS m_id, m.chat_id AS m_chat_id, m.seq AS m_seq, m.sender_id AS m_sender_id, \
         m.receiver_id AS m_receiver_id, m.cipher AS m_cipher, m.iv AS m_iv, \
         m.signature AS m_signature, m.sender_public_id_key AS m_sender_public_id_key, \
         m.sender_public_signing_key AS m_sender_public_signing_key, \
         m.receiver_public_id_key AS m_receiver_public_id_key, \
         m.client_timestamp AS m_client_timestamp, m.temp_message_id AS m_temp_message_id, \
         m.status AS m_status, m.created_at AS m_created_at, m.delivered_at AS m_delivered_at, \
         m.read_at AS m_read_at"
    };
}

/// A user's chats with the other member and the last message (`seq = next_seq - 1`), in one
/// statement. Each use appends its `WHERE me.user_id = $1 ...`.
macro_rules! chat_select {
    () => {
        concat!(
            "SELECT me.chat_id AS chat_id, me.unread_count AS unread_count, \
                    me.last_activity AS last_activity, \
                    c.created_at AS c_created_at, c.next_seq AS next_seq, \
                    u.id AS u_id, u.username AS u_username, u.display_name AS u_display_name, \
                    u.public_id_key AS u_public_id_key, u.public_signing_key AS u_public_signing_key, \
                    u.last_seen AS u_last_seen, ",
            last_message_columns!(),
            " FROM chat_members me \
              JOIN chats c ON c.id = me.chat_id \
              JOIN users u ON u.id = me.other_id \
              LEFT JOIN messages m ON m.chat_id = me.chat_id AND m.seq = c.next_seq - 1 "
        )
    };
}

// ------------------------------------------------------------------ users

pub const INSERT_USER: &str = "INSERT INTO users (id, username, username_lower, email, display_name, \
     registration_record, public_id_key, public_signing_key, key_bundle, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// `$1` is the lower-cased username.
pub const USER_BY_USERNAME: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE username_lower = $1"
);

pub const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");

pub const LIST_USERS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users ORDER BY username_lower LIMIT $1 OFFSET $2"
);

pub const ROTATE_KEYS: &str = "UPDATE users SET public_id_key = $2, public_signing_key = $3, key_bundle = $4 \
     WHERE id = $1";

pub const SET_LAST_SEEN: &str = "UPDATE users SET last_seen = $2 WHERE id = $1";

/// Other users in username order after a cursor (`$2`), optionally filtered by a LIKE pattern
/// (`$3`, lower-cased and escaped).
pub const CONTACTS: &str = "SELECT id, username, display_name, public_id_key, public_signing_key, last_seen \
     FROM users \
     WHERE username_lower > $2 AND id <> $1 \
       AND ($3::text IS NULL OR username_lower LIKE $3 ESCAPE '\\' \
            OR lower(coalesce(display_name, '')) LIKE $3 ESCAPE '\\') \
     ORDER BY username_lower LIMIT $4";

// ------------------------------------------------------------------ logins and tokens

pub const INSERT_PENDING_LOGIN: &str =
    "INSERT INTO pending_logins (id, user_id, state, expires_at) VALUES ($1, $2, $3, $4)";

pub const TAKE_PENDING_LOGIN: &str =
    "DELETE FROM pending_logins WHERE id = $1 RETURNING id, user_id, state, expires_at";

pub const PURGE_PENDING_LOGINS: &str = "DELETE FROM pending_logins WHERE expires_at <= $1";

pub const PURGE_REFRESH_TOKENS: &str = "DELETE FROM refresh_tokens WHERE expires_at <= $1";

pub const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Spends a live refresh token; returns nothing if it is spent, revoked, expired or unknown.
/// A concurrent second spender waits for the row lock, re-checks the WHERE and gets nothing.
pub const SPEND_REFRESH: &str = "UPDATE refresh_tokens SET spent_at = $2 \
     WHERE token_hash = $1 AND spent_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
     RETURNING user_id, family_id";

pub const REFRESH_BY_HASH: &str = "SELECT user_id, family_id, expires_at, spent_at, revoked_at \
     FROM refresh_tokens WHERE token_hash = $1";

pub const REVOKE_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";

// ------------------------------------------------------------------ chats

/// Creates the chat of an ordered pair unless it exists (a concurrent creator waits for the
/// first one's commit, then inserts nothing).
pub const INSERT_CHAT: &str = "INSERT INTO chats (id, user_low, user_high, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_low, user_high) DO NOTHING";

pub const INSERT_MEMBER: &str = "INSERT INTO chat_members (chat_id, user_id, other_id, last_activity) \
     VALUES ($1, $2, $3, $4)";

pub const CHAT_BY_PAIR: &str = "SELECT id FROM chats WHERE user_low = $1 AND user_high = $2";

pub const CHAT_PEERS: &str = "SELECT other_id FROM chat_members WHERE user_id = $1";

pub const IS_MEMBER: &str =
    "SELECT EXISTS (SELECT 1 FROM chat_members WHERE chat_id = $1 AND user_id = $2)";

/// The other member of chat `$1` as seen by member `$2` (nothing when `$2` is not a member).
pub const OTHER_MEMBER: &str =
    "SELECT other_id FROM chat_members WHERE chat_id = $1 AND user_id = $2";

/// [`OTHER_MEMBER`], locking the member's row: mark-read holds it so that no send can count a
/// message between the recount and the commit.
pub const OTHER_MEMBER_FOR_UPDATE: &str =
    "SELECT other_id FROM chat_members WHERE chat_id = $1 AND user_id = $2 FOR UPDATE";

/// The first page of `$1`'s chats, most recent activity first.
pub const CHAT_LIST: &str = concat!(
    chat_select!(),
    "WHERE me.user_id = $1 ORDER BY me.last_activity DESC, me.chat_id DESC LIMIT $2"
);

/// The page of `$1`'s chats after the cursor `($2, $3)`.
pub const CHAT_LIST_AFTER: &str = concat!(
    chat_select!(),
    "WHERE me.user_id = $1 AND (me.last_activity, me.chat_id) < ($2, $3) \
     ORDER BY me.last_activity DESC, me.chat_id DESC LIMIT $4"
);

/// One chat as member `$1` sees it.
pub const CHAT_ONE: &str = concat!(chat_select!(), "WHERE me.user_id = $1 AND me.chat_id = $2");

/// The chats `$2` (`uuid[]`) as member `$1` sees them, in no particular order.
pub const CHATS_BY_IDS: &str = concat!(
    chat_select!(),
    "WHERE me.user_id = $1 AND me.chat_id = ANY($2)"
);

// ------------------------------------------------------------------ messages

pub const MESSAGE_BY_TEMP_ID: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.sender_id = $1 AND m.temp_message_id = $2"
);

/// The messages `$1` (`uuid[]`).
pub const MESSAGES_BY_IDS: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.id = ANY($1)"
);

/// Assigns the chat's next sequence number and records the activity. The row lock it takes is
/// held to the commit, so a chat's sends are serialized and the numbers have no gap; a rollback
/// gives the number back.
pub const NEXT_SEQ: &str = "UPDATE chats SET next_seq = next_seq + 1, updated_at = $2 WHERE id = $1 \
     RETURNING next_seq - 1";

pub const INSERT_MESSAGE: &str = "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
     sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, \
     temp_message_id, created_at, counts_unread) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (sender_id, temp_message_id) DO NOTHING";

/// The messages already stored for the keys `($1[i], $2[i])` (sender, tempMessageId): the
/// repeats of a batch of sends, found in one statement.
pub const MESSAGES_BY_TEMP_IDS: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m JOIN UNNEST($1::uuid[], $2::text[]) AS k(sender, temp) \
     ON m.sender_id = k.sender AND m.temp_message_id = k.temp"
);

/// The members of the chats `$1` (`uuid[]`), each with the other member.
pub const MEMBERS_OF_CHATS: &str =
    "SELECT chat_id, user_id, other_id FROM chat_members WHERE chat_id = ANY($1)";

/// Locks the chats `$1` (`uuid[]`), in id order: every writer takes chats' rows in this order
/// (`NO KEY UPDATE`, as [`LOCK_USERS`]).
pub const LOCK_CHATS: &str = "SELECT 1 FROM chats WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Takes `$2[i]` sequence numbers in chat `$1[i]` (locked already when there are several,
/// [`LOCK_CHATS`]) and sets its `updated_at` to `$3[i]`; returns each chat's next number after
/// them.
pub const TAKE_SEQS: &str = "UPDATE chats c SET next_seq = c.next_seq + v.n, updated_at = v.at \
     FROM UNNEST($1::uuid[], $2::int8[], $3::timestamptz[]) AS v(id, n, at) WHERE c.id = v.id \
     RETURNING c.id, c.next_seq";

/// The messages of a batch, one row per element of the arrays; returns the ids it stored (a
/// key stored meanwhile by another node is skipped).
pub const INSERT_MESSAGES: &str = "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
     sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, \
     temp_message_id, created_at, counts_unread) \
     SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[], $6::bytea[], \
     $7::bytea[], $8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[], $12::timestamptz[], \
     $13::text[], $14::timestamptz[], $15::bool[]) \
     ON CONFLICT (sender_id, temp_message_id) DO NOTHING RETURNING id";

/// Moves member `$2[i]` of chat `$1[i]` to activity `$3[i]` and adds `$4[i]` unread messages.
pub const TOUCH_MEMBERS_MANY: &str = "UPDATE chat_members m SET last_activity = v.at, \
     unread_count = m.unread_count + v.unread \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int8[]) AS v(chat_id, user_id, at, unread) \
     WHERE m.chat_id = v.chat_id AND m.user_id = v.user_id";

/// Gives back the number [`NEXT_SEQ`] took, when the send turned out to be a repeat. Only the
/// transaction holding the chat's row lock runs it, so no later number was taken.
pub const GIVE_SEQ_BACK: &str = "UPDATE chats SET next_seq = next_seq - 1 WHERE id = $1";

/// Moves both members' activity and counts the message as unread for receiver `$3` when `$4`.
pub const TOUCH_MEMBERS: &str = "UPDATE chat_members SET last_activity = $2, \
     unread_count = unread_count + (CASE WHEN user_id = $3 AND $4 THEN 1 ELSE 0 END) \
     WHERE chat_id = $1";

pub const HISTORY: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.chat_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
);

pub const SINCE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m WHERE m.chat_id = $1 AND m.seq > $2 ORDER BY m.seq ASC LIMIT $3"
);

/// Locks the messages `$1` (`uuid[]`, sorted), in id order (`NO KEY UPDATE`, as
/// [`LOCK_USERS`]).
pub const LOCK_MESSAGES: &str =
    "SELECT 1 FROM messages WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Marks message `$1[i]` delivered by its receiver `$2[i]` at `$3[i]`, once: only a message
/// still `sent` changes (each pair once in the arrays; a message may come with several users,
/// of whom only its receiver matches); returns the messages it marked, with their receiver.
pub const MARK_DELIVERED_MANY: &str = "UPDATE messages m SET status = 'delivered', delivered_at = v.at \
     FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) AS v(id, receiver, at) \
     WHERE m.id = v.id AND m.receiver_id = v.receiver AND m.status = 'sent' \
     RETURNING m.id, m.chat_id, m.seq, m.sender_id, m.receiver_id";

pub const MARK_READ: &str = "UPDATE messages SET status = 'read', read_at = $4, \
     delivered_at = coalesce(delivered_at, $4) \
     WHERE chat_id = $1 AND receiver_id = $2 AND seq <= $3 AND status <> 'read'";

/// Sets the reader's unread count from the messages themselves, in the same transaction.
pub const RECOUNT_UNREAD: &str = "UPDATE chat_members SET \
     unread_count = (SELECT count(*) FROM messages \
                     WHERE chat_id = $1 AND receiver_id = $2 AND status <> 'read' AND counts_unread), \
     last_read_seq = greatest(last_read_seq, $3) \
     WHERE chat_id = $1 AND user_id = $2 RETURNING unread_count";

// ------------------------------------------------------------------ change feed

/// Locks the users `$1` (`uuid[]`), in id order: every writer takes users' rows in this order.
/// `NO KEY UPDATE`, the lock an `UPDATE` of the counter takes anyway: it does not conflict with
/// the `KEY SHARE` locks that inserting a message takes on its sender and receiver (foreign
/// keys), where `FOR UPDATE` would, and deadlocked a send batch with a receipt batch.
pub const LOCK_USERS: &str = "SELECT 1 FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// Takes the next `$2[i]` feed cursors of each user `$1[i]` (the rows locked already when there
/// are several, [`LOCK_USERS`]); returns each user's last. The row lock orders a user's feed
/// writers by commit, so a reader never sees cursor n+1 before n.
pub const BUMP_CHANGE_SEQS: &str = "UPDATE users u SET change_seq = u.change_seq + v.n \
     FROM UNNEST($1::uuid[], $2::int8[]) AS v(id, n) WHERE u.id = v.id \
     RETURNING u.id, u.change_seq";

/// Feed entries, one row per element of the arrays.
pub const INSERT_CHANGES: &str = "INSERT INTO user_changes (user_id, seq, kind, chat_id, message_id, actor_id, up_to_seq, at) \
     SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], \
     $7::int8[], $8::timestamptz[])";

pub const FEED: &str = "SELECT seq, kind, chat_id, message_id, actor_id, up_to_seq, at FROM user_changes \
     WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The statements whose plans must use an index, by name (see tests/query_plans.rs): those of
/// the SQLite backend's list, plus the statements only this backend has.
pub fn hot_queries() -> Vec<(&'static str, &'static str)> {
    vec![
        ("user_by_username", USER_BY_USERNAME),
        ("refresh_by_hash", REFRESH_BY_HASH),
        ("spend_refresh", SPEND_REFRESH),
        ("chat_list", CHAT_LIST),
        ("message_by_temp_id", MESSAGE_BY_TEMP_ID),
        ("history", HISTORY),
        ("since", SINCE),
        ("mark_read", MARK_READ),
        ("recount_unread", RECOUNT_UNREAD),
        ("feed", FEED),
        ("is_member", IS_MEMBER),
        ("chat_peers", CHAT_PEERS),
        ("contacts", CONTACTS),
        // Beyond the SQLite list.
        ("user_by_id", USER_BY_ID),
        ("chat_list_after", CHAT_LIST_AFTER),
        ("chat_one", CHAT_ONE),
        ("chats_by_ids", CHATS_BY_IDS),
        ("messages_by_ids", MESSAGES_BY_IDS),
        ("other_member_for_update", OTHER_MEMBER_FOR_UPDATE),
        ("next_seq", NEXT_SEQ),
        ("touch_members", TOUCH_MEMBERS),
        ("lock_users", LOCK_USERS),
        ("messages_by_temp_ids", MESSAGES_BY_TEMP_IDS),
        ("members_of_chats", MEMBERS_OF_CHATS),
        ("lock_chats", LOCK_CHATS),
        ("lock_messages", LOCK_MESSAGES),
        ("mark_delivered_many", MARK_DELIVERED_MANY),
        ("take_seqs", TAKE_SEQS),
        ("touch_members_many", TOUCH_MEMBERS_MANY),
        ("bump_change_seqs", BUMP_CHANGE_SEQS),
        ("revoke_family", REVOKE_FAMILY),
        ("chat_by_pair", CHAT_BY_PAIR),
    ]
}
