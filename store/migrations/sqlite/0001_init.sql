-- Waterline schema for embedded SQLite. Times are INTEGER microseconds since the Unix epoch,
-- UTC; values are in canonical units. Mirrors migrations/postgres.

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO store_meta (key, value) VALUES ('rollups', 'service');

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL CHECK (status IN ('active', 'pending', 'retired')),
    protocol    TEXT,
    first_seen  INTEGER,
    last_seen   INTEGER,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    updated_by  TEXT
);

CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    sensor      TEXT NOT NULL UNIQUE,
    kind        TEXT,
    unit        TEXT,
    dma         TEXT,
    station     TEXT,
    role        TEXT,
    alarm_low   REAL,
    alarm_high  REAL,
    resolution  REAL,
    described   INTEGER NOT NULL DEFAULT 0,
    device      TEXT,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);

CREATE TABLE readings (
    series_id   INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (series_id, time)
) WITHOUT ROWID;

CREATE TABLE readings_15m (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE readings_1h (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;
CREATE TABLE readings_1d (
    series_id INTEGER NOT NULL, bucket INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (series_id, bucket)
) WITHOUT ROWID;

CREATE TABLE events (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    dma              TEXT,
    sensor           TEXT,
    station          TEXT,
    sensors          TEXT NOT NULL DEFAULT '[]',
    start_time       INTEGER NOT NULL,
    detected_at      INTEGER NOT NULL,
    end_time         INTEGER,
    severity         TEXT,
    value            REAL,
    flow_m3h         REAL,
    confidence       REAL,
    message          TEXT,
    state            TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by  TEXT,
    acknowledged_at  INTEGER,
    resolved_by      TEXT,
    resolved_at      INTEGER,
    resolution       TEXT,
    resolution_note  TEXT,
    created_at       INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);
CREATE INDEX events_detected_at ON events (detected_at);

CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    received_at  INTEGER NOT NULL,
    source       TEXT NOT NULL,
    topic        TEXT,
    reason       TEXT NOT NULL,
    payload      BLOB NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);

CREATE TABLE pending_uplinks (
    id           INTEGER PRIMARY KEY,
    device       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    source       TEXT NOT NULL,
    topic        TEXT,
    payload      BLOB NOT NULL
);
CREATE INDEX pending_uplinks_device ON pending_uplinks (device, id);

CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    revoked_at  INTEGER
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
