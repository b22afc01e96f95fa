-- The alert workflow (docs/api.md): lab grab samples attached to events, and the history of
-- every transition and sample. Mirrors migrations/postgres; times are µs since the epoch.

-- SQLite cannot add a CHECK to an existing table: a trigger refuses other resolution classes.
CREATE TRIGGER events_resolution_class BEFORE UPDATE OF resolution ON events
WHEN NEW.resolution IS NOT NULL
 AND NEW.resolution NOT IN ('true_event', 'sensor_fault', 'maintenance', 'false_alarm')
BEGIN
    SELECT RAISE(ABORT, 'events.resolution must be true_event, sensor_fault, maintenance or false_alarm');
END;

CREATE TABLE event_samples (
    id          INTEGER PRIMARY KEY,
    event_id    INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    parameter   TEXT NOT NULL,
    value       REAL NOT NULL,
    unit        TEXT NOT NULL,
    sampled_at  INTEGER NOT NULL,
    sample_id   TEXT,
    entered_by  TEXT NOT NULL,
    entered_at  INTEGER NOT NULL
);
CREATE INDEX event_samples_event ON event_samples (event_id, id);

CREATE TABLE event_history (
    id        INTEGER PRIMARY KEY,
    event_id  INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('acknowledge', 'resolve', 'sample')),
    details   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX event_history_event ON event_history (event_id, id);
