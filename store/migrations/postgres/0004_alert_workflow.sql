-- The alert workflow (docs/api.md): lab grab samples attached to events, and the history of
-- every transition and sample. The lifecycle columns themselves (state, acknowledged_by/at,
-- resolved_by/at, resolution, resolution_note) exist since 0001.

ALTER TABLE events ADD CONSTRAINT events_resolution_class
    CHECK (resolution IS NULL OR resolution IN ('true_event', 'sensor_fault', 'maintenance', 'false_alarm'));

-- Grab-sample results a person entered for an event; may be added in any state.
CREATE TABLE event_samples (
    id          bigserial PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    parameter   text NOT NULL,
    value       double precision NOT NULL,
    unit        text NOT NULL,
    sampled_at  timestamptz NOT NULL,
    sample_id   text,
    entered_by  text NOT NULL,
    entered_at  timestamptz NOT NULL
);
CREATE INDEX event_samples_event ON event_samples (event_id, id);

-- One row per acknowledgement, resolution and sample: who, when, what.
CREATE TABLE event_history (
    id        bigserial PRIMARY KEY,
    event_id  bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL CHECK (action IN ('acknowledge', 'resolve', 'sample')),
    details   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX event_history_event ON event_history (event_id, id);
