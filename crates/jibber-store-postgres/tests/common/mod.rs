//! Test databases: each test gets its own, empty schema in the PostgreSQL named by
//! `JIBBER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! A schema is named `jibber_test_<unix seconds>_<random>` and reached by setting
//! `search_path` in the connection URL, so every table (and sqlx's migration table) lands in it
//! and tests run in parallel without seeing each other. Schemas left by earlier runs are dropped
//! once they are an hour old. An unreachable server fails the test, with the reason.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jibber_store_postgres::{PgConfig, PgStore};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const PREFIX: &str = "jibber_test_";
/// Schemas of earlier runs older than this are dropped.
const STALE_AFTER_SECS: u64 = 3600;

/// The server the tests use.
pub fn base_url() -> String {
    std::env::var("JIBBER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Creates a fresh schema; returns the URL whose connections use it.
pub async fn fresh_url() -> String {
    let base = base_url();
    let mut admin = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&base))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "PostgreSQL did not answer within 10 s at {base}; start it or set \
                 JIBBER_TEST_POSTGRES_URL"
            )
        })
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base}: {e}; start it or set \
                 JIBBER_TEST_POSTGRES_URL"
            )
        });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    drop_stale_schemas(&mut admin, now).await;
    let schema = format!(
        "{PREFIX}{now}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create the test schema");
    admin.close().await.expect("close");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// Best effort: another test run may be dropping the same schemas.
async fn drop_stale_schemas(admin: &mut PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *admin)
            .await
            .expect("list test schemas");
    for name in names {
        let created = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER_SECS < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

/// Opens a store on `url` with a small pool (tests share the server with other work).
pub async fn open(url: &str) -> PgStore {
    let mut config = PgConfig::new(url);
    config.max_connections = 5;
    PgStore::open(&config).await.expect("open the store")
}

/// A store on a fresh schema.
#[allow(dead_code)] // Not every test binary uses every helper.
pub async fn fresh() -> PgStore {
    open(&fresh_url().await).await
}
