-- Declared windows (docs/api.md, "Declared windows"): compliance exclusions for declared
-- events and quality-station maintenance. Withdrawn windows stay, marked, for the record; the
-- audit log has every declaration and withdrawal.
CREATE TABLE declared_windows (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('exclusion', 'maintenance')),
    dma           TEXT,
    station       TEXT,
    sensor        TEXT,
    from_time     INTEGER NOT NULL,        -- µs since the epoch, UTC
    to_time       INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    declared_by   TEXT NOT NULL,
    declared_at   INTEGER NOT NULL,
    withdrawn_by  TEXT,
    withdrawn_at  INTEGER,
    CHECK ((dma IS NOT NULL) + (station IS NOT NULL) + (sensor IS NOT NULL) = 1),
    CHECK (from_time < to_time)
);
CREATE INDEX declared_windows_span ON declared_windows (to_time, from_time);
