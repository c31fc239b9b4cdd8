-- The same CHECK constraints, written as comparisons instead of value lists. SQLite evaluates a
-- list of more than two constants by building a temporary in-memory table for each statement
-- that checks it: every message INSERT, every delivery or read UPDATE and every feed INSERT
-- opened and closed such a table, 8 % of the server's CPU in the relay (BENCHMARKS.md,
-- session 7). `a = x OR a = y OR a = z` is checked by plain comparisons.
--
-- A constraint rewritten to an equivalent one changes nothing on disk, so instead of rebuilding
-- the tables this edits their stored definitions, as SQLite's documentation describes for
-- changing a CHECK constraint (https://sqlite.org/lang_altertable.html, "otheralter"); the
-- RESET reloads the schema on this connection (the store opens its other connections after the
-- migrations have run).
PRAGMA writable_schema = ON;

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (status IN (''sent'', ''delivered'', ''read''))',
       'CHECK (status = ''sent'' OR status = ''delivered'' OR status = ''read'')')
 WHERE type = 'table' AND name = 'messages';

UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (kind IN (''message'', ''delivered'', ''read'', ''chat''))',
       'CHECK (kind = ''message'' OR kind = ''delivered'' OR kind = ''read'' OR kind = ''chat'')')
 WHERE type = 'table' AND name = 'user_changes';

PRAGMA writable_schema = RESET;
