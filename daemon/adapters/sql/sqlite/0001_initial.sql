-- tickd store, schema version 1.
--
-- Times are ISO-8601 UTC text with microseconds ('2024-05-01T06:00:00.000000+00:00'), so
-- they sort as text. JSON columns hold text. The migrator sets PRAGMA user_version and
-- PRAGMA application_id; this file only creates objects.

-- ---- runs ---------------------------------------------------------------------------------

CREATE TABLE runs (
    run_id          TEXT    PRIMARY KEY,
    job             TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('QUEUED', 'STARTING', 'RUNNING',
                            'CANCELING', 'SUCCESS', 'FAILURE', 'CANCELED', 'TIMED_OUT')),
    instigator_kind TEXT    NOT NULL,
    instigator_name TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    tags            TEXT    NOT NULL DEFAULT '{}',  -- JSON object, also in run_tags
    run_config      TEXT    NOT NULL DEFAULT '{}',  -- JSON object
    partition_key   TEXT,
    run_key         TEXT,
    tick_id         TEXT,
    started_at      TEXT,
    ended_at        TEXT,
    attempt         INTEGER NOT NULL DEFAULT 1,
    parent_run_id   TEXT,
    error           TEXT,
    not_before      TEXT,  -- not claimable before this (delayed retries)
    node_id         TEXT   -- the node that claimed it
) WITHOUT ROWID;  -- secondary indexes then carry run_id: dedup probes never read the row

-- Exactly once, enforced here: at most one run ever per instigator and run_key ...
CREATE UNIQUE INDEX runs_run_key_uq
    ON runs (instigator_kind, instigator_name, run_key)
    WHERE run_key IS NOT NULL;

-- ... and at most one active run per job and partition. Queries that look a partition up
-- repeat this WHERE clause word for word so the planner can use the index.
CREATE UNIQUE INDEX runs_active_partition_uq
    ON runs (job, partition_key)
    WHERE partition_key IS NOT NULL
      AND status IN ('QUEUED', 'STARTING', 'RUNNING', 'CANCELING');

-- The queue, in claim order.
CREATE INDEX runs_queue
    ON runs (priority DESC, created_at, run_id, not_before)
    WHERE status = 'QUEUED';

-- Delayed retries, for next_due_at.
CREATE INDEX runs_delayed
    ON runs (not_before)
    WHERE status = 'QUEUED' AND not_before IS NOT NULL;

-- In flight: limit counting at claim time and orphan recovery.
CREATE INDEX runs_in_flight
    ON runs (node_id)
    WHERE status IN ('STARTING', 'RUNNING', 'CANCELING');

-- Overlap policies: the unfinished runs of one schedule or sensor. Unfinished is
-- `ended_at IS NULL` (set exactly when a run reaches a terminal status), so claiming a
-- run (QUEUED -> STARTING) does not rewrite this index.
CREATE INDEX runs_unfinished_by_instigator
    ON runs (instigator_kind, instigator_name, created_at)
    WHERE ended_at IS NULL;

-- Listings, newest first, and purge.
CREATE INDEX runs_created ON runs (created_at, run_id);
CREATE INDEX runs_job_created ON runs (job, created_at, run_id);
CREATE INDEX runs_finished
    ON runs (ended_at)
    WHERE status IN ('SUCCESS', 'FAILURE', 'CANCELED', 'TIMED_OUT');

-- Tags, one row per pair, for `--tag k=v` filters.
CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

CREATE INDEX run_tags_key_value ON run_tags (key, value);

CREATE TABLE run_events (
    seq    INTEGER PRIMARY KEY,  -- grows; a run's rows are deleted together
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    at     TEXT    NOT NULL,
    kind   TEXT    NOT NULL,  -- 'run.enqueued', 'run.starting', 'run.running', ...
    data   TEXT    NOT NULL DEFAULT '{}'  -- JSON object
);

CREATE INDEX run_events_run ON run_events (run_id, seq);

CREATE TABLE run_logs (
    seq    INTEGER PRIMARY KEY,  -- grows; a run's rows are deleted together
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    at     TEXT    NOT NULL,
    stream TEXT    NOT NULL,  -- 'stdout', 'stderr', 'log'
    text   TEXT    NOT NULL
);

CREATE INDEX run_logs_run ON run_logs (run_id, seq);

-- Every run, however inserted, gets its tag rows and its first event. Runs are only ever
-- inserted QUEUED (an ON CONFLICT DO NOTHING that skips a row fires no trigger).
CREATE TRIGGER runs_enqueued AFTER INSERT ON runs
BEGIN
    INSERT INTO run_tags (run_id, key, value)
        SELECT NEW.run_id, key, value FROM json_each(NEW.tags);
    INSERT INTO run_events (run_id, at, kind, data)
        VALUES (NEW.run_id, NEW.created_at, 'run.enqueued',
                json_object('instigator', NEW.instigator_kind || ':' || NEW.instigator_name,
                            'tick_id', NEW.tick_id));
END;

-- ---- ticks and instigators ----------------------------------------------------------------

CREATE TABLE ticks (
    tick_id         TEXT PRIMARY KEY,
    instigator_kind TEXT NOT NULL,
    instigator_name TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('STARTED', 'SUCCESS', 'SKIPPED',
                                                    'FAILURE')),
    started_at      TEXT NOT NULL,
    ended_at        TEXT,
    scheduled_for   TEXT,
    -- One decision per request, as JSON columns of equal length:
    -- {"job": [...], "outcome": [...], "run_id": [...], "run_key": [...],
    --  "partition_key": [...]}
    decisions       TEXT NOT NULL,
    skip_reason     TEXT,
    error           TEXT,
    cursor_before   TEXT,
    cursor_after    TEXT,
    -- The time a tick is about: `tickd why NAME --at T` looks around it.
    tick_at         TEXT GENERATED ALWAYS AS (coalesce(scheduled_for, started_at)) VIRTUAL
);

CREATE INDEX ticks_started ON ticks (started_at, tick_id);
CREATE INDEX ticks_instigator_started ON ticks (instigator_name, started_at, tick_id);
CREATE INDEX ticks_tick_at ON ticks (tick_at);
CREATE INDEX ticks_instigator_tick_at ON ticks (instigator_name, tick_at);

CREATE TABLE instigator_state (
    instigator_kind TEXT NOT NULL,
    instigator_name TEXT NOT NULL,
    status          TEXT CHECK (status IN ('RUNNING', 'STOPPED')),  -- NULL: never set
    cursor          TEXT,
    last_tick_at    TEXT,
    last_run_key    TEXT,
    updated_at      TEXT,
    PRIMARY KEY (instigator_kind, instigator_name)
) WITHOUT ROWID;

-- ---- the scheduler lease ---------------------------------------------------------------------

-- One row once anyone has held it; never deleted, so the epoch only grows.
CREATE TABLE lease (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    holder       TEXT    NOT NULL,
    epoch        INTEGER NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT    NOT NULL,
    since        TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL
);
