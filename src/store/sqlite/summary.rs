//! What an incident's summary is read from: its row in `incidents` and its latest event, which
//! holds its version, head and last change (migration 0009). Macros rather than constants, so that
//! each statement is put together as one literal with `concat!`.

/// Each incident joined to its latest event (none before the first), which holds its version
/// (`last.seq`), head (`last.hash`) and last change (`last.at`): what follows `FROM`.
macro_rules! with_last_event {
    () => {
        "incidents LEFT JOIN events AS last ON last.incident = incidents.id
           AND last.seq = (SELECT max(seq) FROM events WHERE incident = incidents.id) "
    };
}

/// Selects incidents' summaries, with what follows `FROM incidents` (`WHERE`, `ORDER BY`).
macro_rules! summaries {
    ($rest:literal) => {
        concat!(
            "SELECT id, runbook_id, key, coalesce(last.seq, 0) AS version, started_at,
                    coalesce(last.at, started_at) AS updated_at, closed_at, last.hash AS head, checkpointed,
                    checkpointed_at FROM ",
            with_last_event!(),
            $rest
        )
    };
}
