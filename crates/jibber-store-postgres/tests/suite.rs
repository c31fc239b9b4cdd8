//! The shared storage suite on PostgreSQL, each case on a fresh schema.

mod common;

use std::sync::Arc;

use jibber_store::Store;

async fn fresh() -> Arc<dyn Store> {
    Arc::new(common::fresh().await)
}

jibber_store::store_suite!(fresh());
