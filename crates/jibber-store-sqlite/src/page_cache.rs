//! SQLite's own page cache, with one change: a commit no longer sweeps the whole cache when it
//! has nothing to drop.
//!
//! At the end of every write transaction SQLite truncates its page cache to the database's size
//! (`pager_end_transaction` → `xTruncate(dbSize + 1)`): pages past the end of the file must not
//! outlive a transaction. The default cache (`pcache1`) decides how to do that from the largest
//! page number it has seen since the last truncation, and when that is far past the limit it
//! walks every slot of its hash table and every page in it. When a b-tree split leaves its new
//! pages out of page-number order, `balance_nonroot` swaps two of them through a temporary page
//! number, the locking page (`PENDING_BYTE / page size + 1`, page 262,145 for 4 KiB pages):
//! from then on the largest number seen is that one, until the next truncation, which is the
//! commit. So on any database under 1 GiB, every commit that split a page that way walked the
//! whole cache: with the batch writer's 32 MiB cache, ~8,000 pages, ~0.6 ms inside the commit
//! (4 % of the server's core at 9,000 messages/s, BENCHMARKS.md session 18).
//!
//! This module installs the default cache's own methods behind a thin layer that keeps its own
//! bound on the page numbers each cache holds, and forwards a truncation only when some page
//! may be at or past its limit. The temporary page number of a swap does not raise the bound
//! (the swap moves that page on to its final number straight away); while a page is at it, any
//! truncation that would drop it is forwarded. Every other call goes straight to the default
//! cache, so what SQLite keeps, evicts and reads is unchanged; only truncations that would have
//! dropped nothing are skipped.
//!
//! SQLite takes a page cache only before it initializes: [`install`] must run before the
//! process opens its first connection ([`crate::SqliteStore::open`] calls it first). Later it
//! changes nothing and SQLite keeps its default cache.

// SQLite's page cache interface is C: every call into it and out of it is `unsafe`. Like the
// WAL shim (`wal_vfs.rs`), this module is allowed to use `unsafe` (Cargo.toml).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// SQLite's `PENDING_BYTE`: the first byte of the file's lock range, whose page is never used.
const PENDING_BYTE: u32 = 0x4000_0000;

/// The default cache's methods, as SQLite had them before [`install`].
static DEFAULT: OnceLock<Methods> = OnceLock::new();

/// A method table: C function pointers and SQLite's `pArg` for them (null for the default
/// cache), which SQLite itself shares between all threads.
#[derive(Clone, Copy)]
struct Methods(ffi::sqlite3_pcache_methods2);

// SAFETY: the table is only read after it is stored; the functions are thread-safe C (SQLite's
// own, configured for a multi-threaded process) and `pArg` is only handed back to them.
unsafe impl Send for Methods {}
// SAFETY: as above.
unsafe impl Sync for Methods {}

/// Whether [`install`] replaced SQLite's cache in this process.
static INSTALLED: OnceLock<bool> = OnceLock::new();
static FORWARDED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static LOCK_PAGE_MOVES: AtomicU64 = AtomicU64::new(0);

/// Truncations in this process: handed to the default cache, and skipped because no page could
/// be at or past the limit; and how many pages were moved to the locking page's number (the
/// swaps that made the default cache sweep itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncations {
    pub forwarded: u64,
    pub skipped: u64,
    pub lock_page_moves: u64,
}

/// The truncations so far.
pub fn truncations() -> Truncations {
    Truncations {
        forwarded: FORWARDED.load(Ordering::Relaxed),
        skipped: SKIPPED.load(Ordering::Relaxed),
        lock_page_moves: LOCK_PAGE_MOVES.load(Ordering::Relaxed),
    }
}

/// One cache: the default cache's, and what this layer knows of its page numbers. SQLite uses a
/// cache from one connection at a time, so its fields need no synchronisation.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The locking page for this page size (`balance_nonroot`'s temporary number).
    lock_page: c_uint,
    /// No page of the cache has a larger number, except one at `lock_page` while
    /// `at_lock_page`.
    max_key: c_uint,
    at_lock_page: bool,
}

/// Replaces SQLite's page cache with the default one behind this layer; true if it is now in
/// place (also when an earlier call put it there). False when SQLite had already initialized:
/// the process then keeps the default cache.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let mut default = empty_methods();
        // SAFETY: GETPCACHE2 writes the current methods (the default cache's, which it first
        // sets up if none were configured) into the struct the pointer points to.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETPCACHE2,
                &mut default as *mut ffi::sqlite3_pcache_methods2,
            )
        };
        if rc != ffi::SQLITE_OK || default.xCreate.is_none() {
            return false;
        }
        let default = DEFAULT.get_or_init(|| Methods(default)).0;
        let methods = ffi::sqlite3_pcache_methods2 {
            iVersion: 1,
            pArg: default.pArg,
            xInit: default.xInit,
            xShutdown: default.xShutdown,
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        };
        // SAFETY: SQLite copies the struct; it fails with SQLITE_MISUSE once initialized.
        let rc = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PCACHE2,
                &methods as *const ffi::sqlite3_pcache_methods2,
            )
        };
        rc == ffi::SQLITE_OK
    })
}

fn empty_methods() -> ffi::sqlite3_pcache_methods2 {
    ffi::sqlite3_pcache_methods2 {
        iVersion: 0,
        pArg: std::ptr::null_mut::<c_void>(),
        xInit: None,
        xShutdown: None,
        xCreate: None,
        xCachesize: None,
        xPagecount: None,
        xFetch: None,
        xUnpin: None,
        xRekey: None,
        xTruncate: None,
        xDestroy: None,
        xShrink: None,
    }
}

fn default() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only installed methods call this, and install sets DEFAULT first.
    &DEFAULT.get().expect("the default page cache was saved").0
}

/// The layer's cache behind SQLite's handle.
///
/// # Safety
/// `p` must come from [`create`] and not yet be destroyed; SQLite calls a cache's methods from
/// one connection at a time.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: as the caller promises.
    unsafe { &mut *(p as *mut Cache) }
}

unsafe extern "C" fn create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(x_create) = default().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: the default cache's own constructor, with SQLite's arguments.
    let inner = unsafe { x_create(sz_page, sz_extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let lock_page = PENDING_BYTE / (sz_page.max(1) as u32) + 1;
    Box::into_raw(Box::new(Cache {
        inner,
        lock_page,
        max_key: 0,
        at_lock_page: false,
    })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    // SAFETY: SQLite's handle from `create`; forwarded to the default cache.
    unsafe {
        if let Some(f) = default().xCachesize {
            f(cache(p).inner, n);
        }
    }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: as above.
    unsafe { default().xPagecount.map_or(0, |f| f(cache(p).inner)) }
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create_flag: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as above.
    unsafe {
        let c = cache(p);
        let Some(f) = default().xFetch else {
            return std::ptr::null_mut();
        };
        let page = f(c.inner, key, create_flag);
        // A fetch that may create can add a page with this number; one that cannot only finds
        // pages already counted.
        if create_flag != 0 && !page.is_null() {
            if key == c.lock_page {
                c.at_lock_page = true;
            } else {
                c.max_key = c.max_key.max(key);
            }
        }
        page
    }
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    // SAFETY: as above.
    unsafe {
        if let Some(f) = default().xUnpin {
            f(cache(p).inner, page, discard);
        }
    }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    // SAFETY: as above.
    unsafe {
        let c = cache(p);
        if let Some(f) = default().xRekey {
            f(c.inner, page, old, new);
        }
        if old == c.lock_page {
            c.at_lock_page = false;
        }
        if new == c.lock_page {
            LOCK_PAGE_MOVES.fetch_add(1, Ordering::Relaxed);
            c.at_lock_page = true;
        } else {
            c.max_key = c.max_key.max(new);
        }
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as above.
    unsafe {
        let c = cache(p);
        let lock_page_goes = c.at_lock_page && c.lock_page >= limit;
        if c.max_key < limit && !lock_page_goes {
            // No page is numbered `limit` or more: there is nothing to drop.
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        FORWARDED.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = default().xTruncate {
            f(c.inner, limit);
        }
        c.max_key = c.max_key.min(limit.saturating_sub(1));
        if c.lock_page >= limit {
            c.at_lock_page = false;
        }
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: SQLite's handle from `create`, destroyed once: the default cache goes first, then
    // the layer's box.
    unsafe {
        let c = Box::from_raw(p as *mut Cache);
        if let Some(f) = default().xDestroy {
            f(c.inner);
        }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: as in `cachesize`.
    unsafe {
        if let Some(f) = default().xShrink {
            f(cache(p).inner);
        }
    }
}
