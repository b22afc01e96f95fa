-- Routine lab grab samples at a monitoring station. Mirrors migrations/postgres; times are
-- µs since the epoch.
CREATE TABLE station_samples (
    id          INTEGER PRIMARY KEY,
    station     TEXT NOT NULL,
    parameter   TEXT NOT NULL,
    value       REAL NOT NULL,
    unit        TEXT NOT NULL,
    sampled_at  INTEGER NOT NULL,
    sample_id   TEXT,
    entered_by  TEXT NOT NULL,
    entered_at  INTEGER NOT NULL
);
CREATE INDEX station_samples_time ON station_samples (sampled_at, station);
