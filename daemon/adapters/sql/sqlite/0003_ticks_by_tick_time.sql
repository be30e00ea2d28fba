-- tickd store, schema version 3: one per-instigator index on ticks instead of two.
--
-- Ticks are listed, filtered by age and purged by the time they are about (tick_at: the
-- scheduled time, else the start). An index keyed by instigator puts each instigator's
-- new entry on a page of its own, so a fan-out of N schedules rewrote N pages of each
-- such index per boundary; (instigator_name, tick_at) now serves both a name's listing
-- and `tickd why NAME --at T`, and time order is one index that grows at its end.
DROP INDEX ticks_started;
DROP INDEX ticks_instigator_started;
CREATE INDEX ticks_tick_at ON ticks (tick_at, tick_id);
