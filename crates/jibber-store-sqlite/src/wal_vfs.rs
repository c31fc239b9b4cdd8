//! A VFS shim that writes a commit's WAL frames with one write per 124 KiB instead of two per page.
//!
//! SQLite writes each WAL frame as two calls: its 24-byte header, then the page. A relay batch
//! writes dozens to hundreds of pages, so its commit made hundreds of `pwrite`s, and each frame
//! straddled two page-cache folios: `pwrite` was a sixth of the server's CPU at 6,000
//! messages/s (BENCHMARKS.md, session 11). This shim sits on the platform's default VFS and
//! changes one thing: writes to a WAL file that continue the previous one are gathered in
//! memory and handed to the default VFS as one write (per 124 KiB) before anything else
//! touches the file (a sync, a read, a truncation, its size, a lock, a file control, closing
//! it), and before the connection releases any of the database's shared-memory locks (among
//! them the WAL's write lock). Every other call goes straight to the default VFS.
//!
//! **Durability is unchanged.** With `synchronous=FULL` every commit ends with a sync of the
//! WAL, and the shim writes what it holds before it syncs: the frames are on disk before the
//! commit returns, as without the shim. A failed write surfaces as that sync's error, so the
//! commit fails and is rolled back, as a failed write would have. Other connections see a
//! commit only when the writer publishes it in the WAL index, which SQLite does after that sync.
//! Frames of a transaction that was rolled back are written out (harmlessly, past the WAL's
//! last commit, as SQLite itself leaves spilled frames) before the write lock is released, so
//! they can never land on frames that another connection commits afterwards.
//!
//! **Only for `synchronous=FULL`.** With `NORMAL` a commit does not sync the WAL, so nothing
//! would write the gathered frames before the commit is published: the batch writer opens its
//! connection through this VFS only when durability is FULL. The shim also gathers nothing on a
//! device that does not promise power-safe overwrite (SQLite then pads the WAL and writes part
//! of the last frame after the sync).
//!
//! It is a shim over the default VFS through SQLite's own VFS interface, as SQLite's
//! `vfstrace.c` is, with one difference: the real file lives at the start of the shim's file
//! object, so the default VFS's methods work on it unchanged and only the wrapped methods pass
//! through the shim; the shim's state follows the real file.

// SQLite's VFS interface is C: every call into it and out of it is `unsafe`. This is the only
// module of the crate that may use `unsafe` (Cargo.toml).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use rusqlite::ffi;

/// The name the batch writer opens its connection with.
pub(crate) const NAME: &CStr = c"jibber-wal-gather";

/// Gathered bytes after which the shim writes them out even without a sync (a migration's
/// transaction can be far larger than a relay batch).
const MAX_GATHERED: usize = 8 << 20;

/// The most the shim hands to the default VFS in one write: the unix VFS takes at most
/// 128 KiB − 1 bytes per call (`seekAndWriteFd` masks the length with `0x1ffff`).
const MAX_WRITE: usize = 124 << 10;

/// The shim's state, after the real file in each file object it wraps.
struct State {
    /// The default VFS's methods for this file.
    real: *const ffi::sqlite3_io_methods,
    role: Role,
}

enum Role {
    /// A main database file, and its WAL while that is open through the shim.
    Db { wal: *mut ffi::sqlite3_file },
    /// A WAL file: the gathered bytes, which start at file offset `start`, and its database.
    Wal {
        db: *mut ffi::sqlite3_file,
        start: i64,
        buf: Vec<u8>,
    },
}

/// The default VFS (set once, before the shim is registered).
static REAL_VFS: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());
/// The default VFS's `szOsFile`, rounded up so that [`State`] is aligned.
static REAL_SIZE: AtomicUsize = AtomicUsize::new(0);
/// The outcome of registering the shim (once per process).
static REGISTERED: OnceLock<c_int> = OnceLock::new();

#[cfg(test)]
thread_local! {
    /// Writes this thread handed to the default VFS for WAL files (tests count them).
    static FLUSHES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Registers the shim (once per process) under [`NAME`]; it is not made the default.
pub(crate) fn register() -> Result<(), c_int> {
    let rc = *REGISTERED.get_or_init(|| unsafe {
        let rc = ffi::sqlite3_initialize();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let real = ffi::sqlite3_vfs_find(std::ptr::null());
        if real.is_null() {
            return ffi::SQLITE_ERROR;
        }
        let align = std::mem::align_of::<State>();
        let real_size = ((*real).szOsFile as usize).div_ceil(align) * align;
        REAL_VFS.store(real, Ordering::Release);
        REAL_SIZE.store(real_size, Ordering::Release);
        let mut vfs = *real;
        vfs.szOsFile = (real_size + std::mem::size_of::<State>()) as c_int;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.xOpen = Some(open);
        // SQLite keeps the pointer for the life of the process.
        ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
    });
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The shim's state of a file it wraps (its methods are [`DB`] or [`WAL`]).
unsafe fn state(file: *mut ffi::sqlite3_file) -> *mut State {
    unsafe {
        file.cast::<u8>()
            .add(REAL_SIZE.load(Ordering::Acquire))
            .cast::<State>()
    }
}

unsafe fn real(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    unsafe { &*(*state(file)).real }
}

/// Method tables built from the default VFS's: `DB` for main databases, `WAL` for WAL files.
struct Table {
    real: usize,
    methods: ffi::sqlite3_io_methods,
}
// SAFETY: a table holds function pointers only; it is written once and then only read.
unsafe impl Send for Table {}
unsafe impl Sync for Table {}
static DB: OnceLock<Table> = OnceLock::new();
static WAL: OnceLock<Table> = OnceLock::new();

/// `table`'s methods, built from `real` on first use. `None` when `real` is another method
/// table than the one they were built from, or of a version this shim does not know (the file
/// is then left as the default VFS opened it).
fn wrapped(
    table: &'static OnceLock<Table>,
    real: *const ffi::sqlite3_io_methods,
    wrap: fn(ffi::sqlite3_io_methods) -> ffi::sqlite3_io_methods,
) -> Option<*const ffi::sqlite3_io_methods> {
    let t = table.get_or_init(|| Table {
        real: real as usize,
        // SAFETY: `real` is the default VFS's method table, which lives as long as SQLite.
        methods: wrap(unsafe { *real }),
    });
    (t.real == real as usize && t.methods.iVersion <= 3).then_some(&t.methods as *const _)
}

fn db_methods(real: ffi::sqlite3_io_methods) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        xClose: Some(db_close),
        xShmLock: Some(db_shm_lock),
        ..real
    }
}

/// Every WAL call that could observe the file writes out what is gathered first.
fn wal_methods(real: ffi::sqlite3_io_methods) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        xClose: Some(wal_close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xFileControl: Some(file_control),
        ..real
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let real_vfs = REAL_VFS.load(Ordering::Acquire);
        let Some(real_open) = real_vfs.as_ref().and_then(|v| v.xOpen) else {
            return ffi::SQLITE_ERROR;
        };
        // The default VFS's own object, so that its open sees its own settings.
        let rc = real_open(real_vfs, name, file, flags, out_flags);
        let methods = (*file).pMethods;
        if rc != ffi::SQLITE_OK || methods.is_null() {
            return rc;
        }
        if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 {
            if let Some(db) = wrapped(&DB, methods, db_methods) {
                state(file).write(State {
                    real: methods,
                    role: Role::Db {
                        wal: std::ptr::null_mut(),
                    },
                });
                (*file).pMethods = db;
            }
        } else if flags & ffi::SQLITE_OPEN_WAL != 0 {
            let powersafe = match (*methods).xDeviceCharacteristics {
                Some(f) => f(file) & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0,
                None => false,
            };
            // The database this WAL belongs to, which must be wrapped too (its write lock).
            let db = ffi::sqlite3_database_file_object(name);
            let db_wrapped = !db.is_null()
                && DB
                    .get()
                    .is_some_and(|t| std::ptr::eq((*db).pMethods, &t.methods));
            if let (true, true, Some(wal)) =
                (powersafe, db_wrapped, wrapped(&WAL, methods, wal_methods))
            {
                state(file).write(State {
                    real: methods,
                    role: Role::Wal {
                        db,
                        start: 0,
                        buf: Vec::new(),
                    },
                });
                if let Role::Db { wal: linked } = &mut (*state(db)).role {
                    *linked = file;
                }
                (*file).pMethods = wal;
            }
        }
        rc
    }
}

/// Hands a WAL's gathered bytes to the default VFS.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let st = &mut *state(file);
        match &mut st.role {
            Role::Wal { start, buf, .. } => write_out(&*st.real, file, *start, buf),
            Role::Db { .. } => ffi::SQLITE_OK,
        }
    }
}

/// Writes `buf` (which starts at file offset `start`) through `real`, in writes of at most
/// [`MAX_WRITE`] bytes, and empties it.
unsafe fn write_out(
    real: &ffi::sqlite3_io_methods,
    file: *mut ffi::sqlite3_file,
    start: i64,
    buf: &mut Vec<u8>,
) -> c_int {
    if buf.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(w) = real.xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    for (i, chunk) in buf.chunks(MAX_WRITE).enumerate() {
        #[cfg(test)]
        FLUSHES.with(|n| n.set(n.get() + 1));
        // SAFETY: `file` is the open file `real` belongs to; the chunk outlives the call.
        rc = unsafe {
            w(
                file,
                chunk.as_ptr().cast(),
                chunk.len() as c_int,
                start + (i * MAX_WRITE) as i64,
            )
        };
        if rc != ffi::SQLITE_OK {
            break;
        }
    }
    // Written or failed, the bytes are gone: a failure is this call's error (a sync's, which
    // fails the commit).
    buf.clear();
    rc
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
        let st = &mut *state(file);
        let Role::Wal { start, buf, .. } = &mut st.role else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let end = *start + buf.len() as i64;
        if !buf.is_empty() && offset >= *start && offset + bytes.len() as i64 <= end {
            // A frame of this transaction written again: SQLite rewrites in place a page it
            // wrote earlier in the same transaction.
            let at = (offset - *start) as usize;
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            return ffi::SQLITE_OK;
        }
        if buf.is_empty() || offset != end || buf.len() + bytes.len() > MAX_GATHERED {
            let rc = write_out(&*st.real, file, *start, buf);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            *start = offset;
        }
        buf.extend_from_slice(bytes);
        ffi::SQLITE_OK
    }
}

/// Forwards a call to the default VFS's method after writing out what is gathered.
macro_rules! flushed {
    ($file:expr, $method:ident $(, $arg:expr)*) => {{
        let rc = flush($file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match real($file).$method {
            Some(f) => f($file $(, $arg)*),
            None => ffi::SQLITE_IOERR,
        }
    }};
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe { flushed!(file, xSync, flags) }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe { flushed!(file, xRead, data, amount, offset) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    unsafe { flushed!(file, xTruncate, size) }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    unsafe { flushed!(file, xFileSize, size) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { flushed!(file, xLock, level) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { flushed!(file, xUnlock, level) }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe { flushed!(file, xFileControl, op, arg) }
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let rc = flush(file);
        if let Role::Wal { db, .. } = (*state(file)).role
            && let Role::Db { wal } = &mut (*state(db)).role
            && *wal == file
        {
            *wal = std::ptr::null_mut();
        }
        let closed = close_real(file);
        if rc != ffi::SQLITE_OK { rc } else { closed }
    }
}

/// The database's shared-memory locks: the WAL's gathered bytes are written out before any
/// lock changes hands, above all the write lock at the end of a transaction (committed or
/// rolled back), so that nothing this connection gathered is written after another
/// connection's frames.
unsafe extern "C" fn db_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        let flushed = match (*state(file)).role {
            Role::Db { wal } if flags & ffi::SQLITE_SHM_UNLOCK != 0 && !wal.is_null() => flush(wal),
            _ => ffi::SQLITE_OK,
        };
        // Forwarded even when the write-out failed: SQLite does not retry an unlock.
        let rc = match real(file).xShmLock {
            Some(f) => f(file, offset, n, flags),
            None => ffi::SQLITE_IOERR,
        };
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            rc
        }
    }
}

unsafe extern "C" fn db_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe { close_real(file) }
}

/// Drops the shim's state of a wrapped file, then closes it with the default VFS.
unsafe fn close_real(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let st = state(file);
        let methods = (*st).real;
        std::ptr::drop_in_place(st);
        match (*methods).xClose {
            Some(f) => f(file),
            None => ffi::SQLITE_OK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rusqlite::{Connection, OpenFlags, params};
    use std::path::Path;

    /// A connection through the shim, set up as the batch writer's (`synchronous=FULL`) but
    /// with a small page cache and frequent checkpoints, so that transactions spill pages to the
    /// WAL before they commit and the WAL restarts often.
    fn shimmed(path: &Path) -> Connection {
        register().expect("register the shim");
        let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), NAME)
            .expect("open through the shim");
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -64; \
             PRAGMA wal_autocheckpoint = 40; \
             CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )
        .expect("set up");
        c.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    fn plain(path: &Path) -> Connection {
        let c = Connection::open(path).expect("open with the default VFS");
        c.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        c
    }

    /// (rows, total bytes, sum of keys) as another connection reads them.
    fn contents(c: &Connection) -> (i64, i64, i64) {
        c.query_row(
            "SELECT count(*), coalesce(sum(length(v)), 0), coalesce(sum(k), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("read the table")
    }

    fn flushes() -> u64 {
        FLUSHES.with(|n| n.get())
    }

    #[test]
    fn a_commit_reaches_the_wal_in_one_write_per_124_kib() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("one.db");
        let c = shimmed(&path);
        c.execute_batch("PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0;")
            .expect("no spills, no checkpoints");
        let reader = plain(&path);
        // A first commit, so that the measured one appends to the WAL (a WAL's first commit
        // also writes and syncs its header).
        c.execute("INSERT INTO t (k, v) VALUES (-1, x'00')", [])
            .expect("first commit");
        let wal = || {
            std::fs::metadata(dir.path().join("one.db-wal"))
                .expect("the WAL")
                .len()
        };
        let before_len = wal();
        let before = flushes();
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for k in 0..100 {
            c.execute(
                "INSERT INTO t (k, v) VALUES (?1, zeroblob(1000))",
                params![k],
            )
            .expect("insert");
        }
        c.execute_batch("COMMIT").expect("commit");
        let written = flushes() - before;
        let new_frames = (wal() - before_len) / (4096 + 24);
        assert!(
            new_frames >= 25,
            "100 rows of 1,000 bytes are 25+ pages: {new_frames}"
        );
        // Without the shim: two writes per frame. With it: one per 124 KiB of frames.
        let most = (new_frames as usize * (4096 + 24)).div_ceil(MAX_WRITE) as u64;
        assert!(
            (1..=most).contains(&written),
            "{written} writes for {new_frames} frames (at most {most})"
        );
        assert_eq!(contents(&reader), (101, 100_001, 4949));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Rows of this many bytes, with fresh keys.
        Insert(Vec<usize>),
        /// Rewrite every row's bytes (pages written again in the same transaction).
        Rewrite(usize),
        /// Delete the rows whose key is divisible by this.
        Delete(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(1usize..6000, 1..40).prop_map(Op::Insert),
            1 => (1usize..3000).prop_map(Op::Rewrite),
            1 => (2i64..5).prop_map(Op::Delete),
        ]
    }

    /// A transaction: its writes, whether it commits, and whether the other (default VFS)
    /// connection commits a write of its own right after it.
    fn transaction() -> impl Strategy<Value = (Vec<Op>, bool, bool)> {
        (
            prop::collection::vec(op(), 1..6),
            prop::bool::weighted(0.7),
            any::<bool>(),
        )
    }

    /// Applies `ops` on `c` and on the model (key → length).
    fn apply(
        c: &Connection,
        model: &mut std::collections::BTreeMap<i64, usize>,
        next: &mut i64,
        ops: &[Op],
    ) {
        for op in ops {
            match op {
                Op::Insert(sizes) => {
                    for &n in sizes {
                        c.execute(
                            "INSERT INTO t (k, v) VALUES (?1, randomblob(?2))",
                            params![*next, n as i64],
                        )
                        .expect("insert");
                        model.insert(*next, n);
                        *next += 1;
                    }
                }
                Op::Rewrite(n) => {
                    c.execute("UPDATE t SET v = randomblob(?1)", params![*n as i64])
                        .expect("rewrite");
                    model.values_mut().for_each(|v| *v = *n);
                }
                Op::Delete(d) => {
                    c.execute("DELETE FROM t WHERE k % ?1 = 0", params![d])
                        .expect("delete");
                    model.retain(|k, _| k % d != 0);
                }
            }
        }
    }

    fn summary(model: &std::collections::BTreeMap<i64, usize>) -> (i64, i64, i64) {
        (
            model.len() as i64,
            model.values().sum::<usize>() as i64,
            model.keys().sum(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the shim's connection commits, rolls back, spills or checkpoints, and
        /// whatever another connection commits in between, every reader sees exactly the
        /// committed rows, and the file is intact after the shim's connection closes.
        #[test]
        fn the_wal_holds_exactly_what_was_committed(txs in prop::collection::vec(transaction(), 1..14)) {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("p.db");
            let c = shimmed(&path);
            let other = plain(&path);
            let mut model = std::collections::BTreeMap::new();
            let mut next = 1i64;
            for (ops, commit, other_writes) in &txs {
                let mut scratch = model.clone();
                let mut scratch_next = next;
                c.execute_batch("BEGIN IMMEDIATE").expect("begin");
                apply(&c, &mut scratch, &mut scratch_next, ops);
                if *commit {
                    c.execute_batch("COMMIT").expect("commit");
                    model = scratch;
                    next = scratch_next;
                } else {
                    c.execute_batch("ROLLBACK").expect("rollback");
                }
                prop_assert_eq!(contents(&other), summary(&model));
                if *other_writes {
                    // Frames of the other connection, right where a rolled-back transaction's
                    // frames were.
                    apply(&other, &mut model, &mut next, &[Op::Insert(vec![3000, 5000, 700])]);
                    prop_assert_eq!(contents(&c), summary(&model));
                }
            }
            drop(c);
            let check: String = other
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("integrity check");
            prop_assert_eq!(check, "ok");
            drop(other);
            let reopened = plain(&path);
            prop_assert_eq!(contents(&reopened), summary(&model));
        }
    }
}
