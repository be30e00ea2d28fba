-- tickd store, schema version 4: a run's tag rows are written by the statement after the
-- runs' insert (sqlite_ticks), for the runs it created that have tags. The trigger cost
-- every run inserted, tagged or not: a tenth of a 10,000-schedule boundary's runs insert.
DROP TRIGGER runs_tagged;
