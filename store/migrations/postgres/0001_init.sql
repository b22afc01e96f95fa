-- Waterline schema for PostgreSQL (plain, or with TimescaleDB: see src/timescale.rs, which
-- turns `readings` into a hypertable and replaces the rollup tables by continuous aggregates).
-- Times are UTC (timestamptz); values are in canonical units.

CREATE TABLE store_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- 'service': the rollup tables below are maintained by the service in the write transaction.
-- 'timescale': they are continuous aggregates maintained by TimescaleDB.
INSERT INTO store_meta (key, value) VALUES ('rollups', 'service');

CREATE TABLE devices (
    id          text PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('active', 'pending', 'retired')),
    protocol    text,
    first_seen  timestamptz,
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

-- One row per measured signal. `id` keys the readings; `sensor` is the public id.
CREATE TABLE series (
    id          serial PRIMARY KEY,
    sensor      text NOT NULL UNIQUE,
    kind        text,
    unit        text,
    dma         text,
    station     text,
    role        text,
    alarm_low   double precision,
    alarm_high  double precision,
    resolution  double precision,
    described   boolean NOT NULL DEFAULT false,
    device      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE readings (
    series_id   integer NOT NULL,
    time        timestamptz NOT NULL,
    value       double precision NOT NULL,
    PRIMARY KEY (series_id, time)
);

CREATE TABLE readings_15m (
    series_id integer NOT NULL, bucket timestamptz NOT NULL,
    min double precision NOT NULL, max double precision NOT NULL,
    sum double precision NOT NULL, count bigint NOT NULL,
    PRIMARY KEY (series_id, bucket)
);
CREATE TABLE readings_1h (LIKE readings_15m INCLUDING ALL);
CREATE TABLE readings_1d (LIKE readings_15m INCLUDING ALL);

CREATE TABLE events (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,
    dma              text,
    sensor           text,
    station          text,
    sensors          jsonb NOT NULL DEFAULT '[]',
    start_time       timestamptz NOT NULL,
    detected_at      timestamptz NOT NULL,
    end_time         timestamptz,
    severity         text,
    value            double precision,
    flow_m3h         double precision,
    confidence       double precision,
    message          text,
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    resolution       text,
    resolution_note  text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_detected_at ON events (detected_at);
CREATE INDEX events_open ON events (kind) WHERE state <> 'resolved';

CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    source       text NOT NULL,
    topic        text,
    reason       text NOT NULL,
    payload      bytea NOT NULL
);
CREATE INDEX dead_letters_received_at ON dead_letters (received_at);

-- Uplinks from devices awaiting approval: kept aside (with their raw bytes) until approval.
CREATE TABLE pending_uplinks (
    id           bigserial PRIMARY KEY,
    device       text NOT NULL,
    received_at  timestamptz NOT NULL,
    source       text NOT NULL,
    topic        text,
    payload      bytea NOT NULL
);
CREATE INDEX pending_uplinks_device ON pending_uplinks (device, id);

CREATE TABLE users (
    name           text PRIMARY KEY,
    role           text NOT NULL,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id          bigserial PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE,
    role        text NOT NULL,
    label       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    target  text,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
