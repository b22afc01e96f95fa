-- PRV schedules in force. Mirrors migrations/postgres; the 24 set points are a JSON array,
-- times µs since the epoch.
CREATE TABLE prv_schedules (
    prv               TEXT PRIMARY KEY,
    hourly_setting_m  TEXT NOT NULL,
    timezone          TEXT NOT NULL,
    source            TEXT NOT NULL CHECK (source IN ('recommendation', 'request')),
    note              TEXT,
    applied_by        TEXT NOT NULL,
    applied_at        INTEGER NOT NULL,
    written_hour      INTEGER,
    written_m         REAL
);
