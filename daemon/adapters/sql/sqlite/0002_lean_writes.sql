-- tickd store, schema version 2: fewer rows and index entries written per tick and run.

-- A run's `run.enqueued` event is no longer a row: the store reads it from the run itself
-- (created_at, instigator, tick_id). Existing rows stay and are not shown twice.
-- Tag rows are written only for runs that have tags.
DROP TRIGGER runs_enqueued;

CREATE TRIGGER runs_tagged AFTER INSERT ON runs WHEN NEW.tags <> '{}'
BEGIN
    INSERT INTO run_tags (run_id, key, value)
        SELECT NEW.run_id, key, value FROM json_each(NEW.tags);
END;

-- Ticks are looked up around a time per instigator only (`tickd why NAME --at T`).
DROP INDEX ticks_tick_at;
