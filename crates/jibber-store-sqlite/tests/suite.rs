//! The shared storage suite on SQLite.

use std::sync::Arc;

use jibber_store::Store;
use jibber_store_sqlite::{SqliteConfig, SqliteStore};

async fn fresh() -> Arc<dyn Store> {
    // The directory outlives the test on purpose: the pools may still hold the file.
    let dir = tempfile::Builder::new()
        .prefix("jibber-store-test")
        .tempdir()
        .expect("tempdir")
        .keep();
    let url = format!("sqlite://{}", dir.join("test.db").display());
    Arc::new(
        SqliteStore::open(&SqliteConfig::new(url))
            .await
            .expect("open"),
    )
}

jibber_store::store_suite!(fresh());
