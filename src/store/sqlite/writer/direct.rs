//! The writer's second connection, for the most common append: an incident's next events, alone
//! in their commit (one incident's commands one after another). It is driven on the writer's own
//! thread, through rusqlite, so such an append costs no trip to sqlx's SQLite thread: a command
//! then waits for its commit and two thread wake-ups (to the writer, and back to the caller), not
//! five (the writer wakes sqlx's thread, which answers the statement's result and then its end as
//! two messages). Measured in BENCHMARKS.md ("Durable commands through the runtime").
//!
//! It writes what the writer's own path would write, the same way: one `INSERT INTO events`, in
//! autocommit, which the schema's triggers make the compare-and-set of the incident's version.
//! Whatever it cannot store (a refusal, a busy file, a failing disk), it leaves unstored, and the
//! writer stores the append again on its usual path, which finds out and says why. Both
//! connections belong to the writer's one thread and never write at the same time.
//!
//! A batch of such appends (many incidents' commands at once) is stored here too, in one
//! transaction: `BEGIN IMMEDIATE`, the same `INSERT INTO events` row by row through one prepared
//! statement, `COMMIT`. Through sqlx the batch cost three trips to its thread (and their
//! wake-ups), a statement of the batch's size prepared for every size met, and every value bound
//! copied into sqlx's arguments; here none of these.

use std::path::Path;
use std::time::Duration;

use std::collections::HashMap;

use rusqlite::{Connection, OpenFlags};

use super::super::super::Error;
use super::super::signed;
use super::{Queued, Writer};
use crate::audit::chain::{self, Hash};

/// Prepared statements kept: one per number of events an append carries, up to this, and the
/// batch's three.
const STATEMENTS: usize = 20;

/// One event's row, the statement a batch runs for each of its events.
const ONE_EVENT: &str = "INSERT INTO events (incident, seq, type, at, event, hash) VALUES (?, ?, ?, ?, ?, ?)";

pub(in crate::store::sqlite) struct Direct {
    connection: Connection,
}

/// An event row as the writer binds it: seq, type, time, canonical JSON, hash.
pub(super) type EventValues<'a> = (i64, &'a str, &'a str, &'a str, &'a str);

impl Direct {
    /// Opens the file the writer's sqlx connection has opened, put in WAL mode (which the file
    /// keeps) and brought up to date, with the same settings: `synchronous` (`FULL`, or `OFF` for a drill), foreign keys, the busy
    /// timeout and the WAL's checkpoint length.
    pub(in crate::store::sqlite) fn open(
        path: &Path,
        synchronous: &str,
        busy_timeout: Duration,
        wal_checkpoint_pages: u32,
    ) -> Result<Direct, Error> {
        let opened =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .and_then(|connection| {
                    connection.busy_timeout(busy_timeout)?;
                    connection.pragma_update(None, "synchronous", synchronous)?;
                    connection.pragma_update(None, "foreign_keys", "ON")?;
                    connection.pragma_update(None, "temp_store", "memory")?;
                    connection.pragma_update(None, "wal_autocheckpoint", wal_checkpoint_pages)?;
                    connection.set_prepared_statement_cache_capacity(STATEMENTS);
                    Ok(connection)
                });
        // The store's errors carry sqlx's; opening is the one place this connection's errors are
        // reported rather than handed to the usual path.
        opened
            .map(|connection| Direct { connection })
            .map_err(|error| sqlx::Error::Io(std::io::Error::other(error)).into())
    }

    /// Inserts `incident`'s events in one statement, which commits as it ends. `Err` when it did
    /// not: nothing of it is stored.
    pub(super) fn insert_events(&mut self, incident: &str, events: &[EventValues<'_>]) -> rusqlite::Result<()> {
        let mut sql = String::from("INSERT INTO events (incident, seq, type, at, event, hash) VALUES ");
        for number in 0..events.len() {
            sql.push_str(if number == 0 { "(?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?)" });
        }
        let mut statement = self.connection.prepare_cached(&sql)?;
        let mut index = 1;
        for (seq, kind, at, json, hash) in events {
            statement.raw_bind_parameter(index, incident)?;
            statement.raw_bind_parameter(index + 1, seq)?;
            statement.raw_bind_parameter(index + 2, kind)?;
            statement.raw_bind_parameter(index + 3, at)?;
            statement.raw_bind_parameter(index + 4, json)?;
            statement.raw_bind_parameter(index + 5, hash)?;
            index += 6;
        }
        statement.raw_execute().map(|_| ())
    }

    /// Inserts several incidents' events, in the order given, in one transaction that commits
    /// when they are all in. `Err` when it did not commit: nothing of it is stored (a
    /// transaction left open by a failure is rolled back).
    pub(super) fn insert_batch<'a>(
        &mut self,
        events: impl IntoIterator<Item = (&'a str, EventValues<'a>)>,
    ) -> rusqlite::Result<()> {
        let connection = &self.connection;
        let stored = connection.prepare_cached("BEGIN IMMEDIATE")?.execute([]).and_then(|_| {
            let mut insert = connection.prepare_cached(ONE_EVENT)?;
            for (incident, (seq, kind, at, json, hash)) in events {
                insert.execute((incident, seq, kind, at, json, hash))?;
            }
            connection.prepare_cached("COMMIT")?.execute([]).map(|_| ())
        });
        if stored.is_err() && !connection.is_autocommit() {
            // The rollback's own failure leaves the transaction to SQLite, which ends it with the
            // connection; the batch is reported unstored either way.
            let _ = connection.execute_batch("ROLLBACK");
        }
        stored
    }
}

impl Writer {
    /// Stores a batch of appends of events alone, each following the head this writer keeps for
    /// its incident (or the one an append before it in the batch leaves), on the direct
    /// connection in one transaction: their versions once committed, `None` when the batch is
    /// not such a batch or was not stored (the usual path then stores it, or says why not).
    pub(super) fn store_batch_directly(&mut self, batch: &[Queued]) -> Option<Vec<u64>> {
        let direct = self.direct.as_mut()?;
        if !batch.iter().all(|append| !append.rows.events.is_empty() && append.rows.statements() == 1) {
            return None;
        }
        // Each incident's version and head as the batch leaves them, so far; and every event's
        // hash, chained in the batch's order.
        let mut heads: HashMap<&str, (u64, Hash)> = HashMap::with_capacity(batch.len());
        let mut hashes = Vec::with_capacity(batch.len());
        for append in batch {
            let rows = &append.rows;
            let incident = rows.incident.as_str();
            let mut head = match heads.get(incident).or_else(|| self.heads.get(incident)) {
                Some((version, head)) if *version == rows.expected => *head,
                _ => return None,
            };
            for event in &rows.events {
                head = chain::link(&head, event.seq, event.json.as_bytes());
                hashes.push(chain::to_hex(&head));
            }
            heads.insert(incident, (rows.version(), head));
        }
        let events = batch.iter().flat_map(|append| {
            let incident = append.rows.incident.as_str();
            append.rows.events.iter().map(move |event| (incident, event))
        });
        let values = events.zip(&hashes).map(|((incident, event), hash)| {
            (incident, (signed(event.seq), event.kind, event.at.as_str(), event.json.as_str(), hash.as_str()))
        });
        direct.insert_batch(values).ok()?;
        for (incident, head) in heads {
            self.remember_head(incident, head);
        }
        Some(batch.iter().map(|append| append.rows.version()).collect())
    }
}
