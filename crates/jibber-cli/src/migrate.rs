//! `jibber migrate-data`: copies an embedded SQLite installation into PostgreSQL, so that a small
//! installation can grow to several nodes without losing history.
//!
//! Both stores are opened as the server opens them (so both schemas are migrated to the current
//! version). Every table is read from one SQLite read transaction (one consistent snapshot) and
//! written, in foreign-key order and in batches, inside ONE PostgreSQL transaction, converting
//! each column (UUID text → `uuid`, Unix milliseconds → `timestamptz`, 0/1 → `boolean`). The
//! row counts are compared before the commit: any difference rolls everything back. A target
//! that already holds accounts is refused unless `--force`, which empties it first.

use anyhow::{Context, bail};
use clap::Args;
use futures_util::TryStreamExt;
use jibber_store_postgres::{PgConfig, PgStore, redact_url};
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use sqlx::postgres::Postgres;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Args)]
pub struct MigrateArgs {
    /// The SQLite database to copy (`sqlite://<path>`). Stop the server that uses it first.
    #[arg(long)]
    from: String,
    /// The PostgreSQL database to fill (`postgres://...`).
    #[arg(long)]
    to: String,
    /// Empty the target first when it already holds data.
    #[arg(long)]
    force: bool,
}

/// How a column is converted.
#[derive(Clone, Copy)]
enum Kind {
    Uuid,
    Text,
    Bytes,
    /// Unix milliseconds → timestamptz.
    Time,
    Int,
    /// 0/1 → boolean.
    Bool,
}

use Kind::{Bool, Bytes, Int, Text, Time, Uuid as Id};

/// Every table, parents before children, with every column.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", Id),
            ("username", Text),
            ("username_lower", Text),
            ("email", Text),
            ("display_name", Text),
            ("registration_record", Bytes),
            ("public_id_key", Bytes),
            ("public_signing_key", Bytes),
            ("key_bundle", Bytes),
            ("created_at", Time),
            ("last_seen", Time),
            ("change_seq", Int),
        ],
    ),
    (
        "pending_logins",
        &[
            ("id", Id),
            ("user_id", Id),
            ("state", Bytes),
            ("expires_at", Time),
        ],
    ),
    (
        "refresh_tokens",
        &[
            ("id", Id),
            ("user_id", Id),
            ("family_id", Id),
            ("token_hash", Bytes),
            ("created_at", Time),
            ("expires_at", Time),
            ("spent_at", Time),
            ("revoked_at", Time),
        ],
    ),
    (
        "chats",
        &[
            ("id", Id),
            ("user_low", Id),
            ("user_high", Id),
            ("next_seq", Int),
            ("created_at", Time),
            ("updated_at", Time),
        ],
    ),
    (
        "chat_members",
        &[
            ("chat_id", Id),
            ("user_id", Id),
            ("other_id", Id),
            ("unread_count", Int),
            ("last_read_seq", Int),
            ("last_activity", Time),
        ],
    ),
    (
        "messages",
        &[
            ("id", Id),
            ("chat_id", Id),
            ("seq", Int),
            ("sender_id", Id),
            ("receiver_id", Id),
            ("cipher", Bytes),
            ("iv", Bytes),
            ("signature", Bytes),
            ("sender_public_id_key", Bytes),
            ("sender_public_signing_key", Bytes),
            ("receiver_public_id_key", Bytes),
            ("client_timestamp", Time),
            ("temp_message_id", Text),
            ("counts_unread", Bool),
            ("status", Text),
            ("created_at", Time),
            ("delivered_at", Time),
            ("read_at", Time),
        ],
    ),
    (
        "user_changes",
        &[
            ("user_id", Id),
            ("seq", Int),
            ("kind", Text),
            ("chat_id", Id),
            ("message_id", Id),
            ("actor_id", Id),
            ("up_to_seq", Int),
            ("at", Time),
        ],
    ),
];

/// Where the SQLite rows of `table` come from: the table, except that a user's feed cursor
/// (`users.change_seq` in PostgreSQL) lives in SQLite's `feeds`.
fn rows_of(table: &str) -> &str {
    match table {
        "users" => {
            "(SELECT u.*, f.last_seq AS change_seq FROM users u JOIN feeds f ON f.user_id = u.id)"
        }
        other => other,
    }
}

/// Rows per INSERT (PostgreSQL takes at most 65,535 parameters per statement).
const BATCH: usize = 500;

/// One converted value.
enum Value {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Time(Option<OffsetDateTime>),
    Int(Option<i64>),
    Bool(Option<bool>),
}

fn read(row: &SqliteRow, i: usize, column: &str, kind: Kind) -> anyhow::Result<Value> {
    let bad = || format!("column {column}");
    Ok(match kind {
        Id => Value::Uuid(
            row.try_get::<Option<String>, _>(i)
                .with_context(bad)?
                .map(|s| Uuid::parse_str(&s))
                .transpose()
                .with_context(bad)?,
        ),
        Text => Value::Text(row.try_get(i).with_context(bad)?),
        Bytes => Value::Bytes(row.try_get(i).with_context(bad)?),
        Time => Value::Time(
            row.try_get::<Option<i64>, _>(i)
                .with_context(bad)?
                .map(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000))
                .transpose()
                .with_context(bad)?,
        ),
        Int => Value::Int(row.try_get(i).with_context(bad)?),
        Bool => Value::Bool(
            row.try_get::<Option<i64>, _>(i)
                .with_context(bad)?
                .map(|v| v != 0),
        ),
    })
}

/// Inserts one batch of converted rows.
async fn insert(
    tx: &mut sqlx::PgConnection,
    table: &str,
    columns: &[(&str, Kind)],
    rows: &mut Vec<Vec<Value>>,
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
    q.push_values(rows.drain(..), |mut b, row| {
        for v in row {
            match v {
                Value::Uuid(v) => b.push_bind(v),
                Value::Text(v) => b.push_bind(v),
                Value::Bytes(v) => b.push_bind(v),
                Value::Time(v) => b.push_bind(v),
                Value::Int(v) => b.push_bind(v),
                Value::Bool(v) => b.push_bind(v),
            };
        }
    });
    q.build()
        .execute(tx)
        .await
        .with_context(|| format!("writing {table}"))?;
    Ok(())
}

/// Copies every table; returns the rows copied per table.
pub async fn run(args: MigrateArgs) -> anyhow::Result<Vec<(&'static str, u64)>> {
    if !args.from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL");
    }
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let path = args
        .from
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    if !std::path::Path::new(path).is_file() {
        bail!("{}: no such SQLite database", args.from);
    }
    let source = SqliteStore::open(&SqliteConfig::new(args.from.clone()))
        .await
        .with_context(|| format!("cannot open {}", args.from))?;
    let target = PgStore::open(&PgConfig::new(args.to.clone()))
        .await
        .with_context(|| format!("cannot open {}", redact_url(&args.to)))?;
    let result = copy(&source, &target, args.force).await;
    source.close().await;
    target.pool().close().await;
    result
}

async fn copy(
    source: &SqliteStore,
    target: &PgStore,
    force: bool,
) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let mut snapshot = source.read_pool().begin().await?;
    let mut tx = target.pool().begin().await?;
    let occupied: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users)")
        .fetch_one(&mut *tx)
        .await?;
    if occupied {
        if !force {
            bail!("the target database already holds accounts; pass --force to replace them");
        }
        let names: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {} CASCADE",
            names.join(", ")
        )))
        .execute(&mut *tx)
        .await?;
    }
    let mut copied = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let select = format!("SELECT {} FROM {}", names.join(", "), rows_of(table));
        let mut stream = sqlx::query(AssertSqlSafe(select)).fetch(&mut *snapshot);
        let mut batch = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        while let Some(row) = stream.try_next().await? {
            let values = columns
                .iter()
                .enumerate()
                .map(|(i, (c, k))| read(&row, i, c, *k))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("reading {table}"))?;
            batch.push(values);
            count += 1;
            if batch.len() == BATCH {
                insert(&mut tx, table, columns, &mut batch).await?;
            }
        }
        drop(stream);
        insert(&mut tx, table, columns, &mut batch).await?;
        let written: i64 =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await?;
        if u64::try_from(written).ok() != Some(count) {
            bail!(
                "{table}: read {count} rows but PostgreSQL holds {written}; nothing was committed"
            );
        }
        copied.push((*table, count));
    }
    tx.commit().await.context("commit")?;
    snapshot.rollback().await?;
    Ok(copied)
}
