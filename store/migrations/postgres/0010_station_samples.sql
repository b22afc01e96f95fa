-- Routine lab grab samples taken at a monitoring station (docs/api.md, "Grab samples"), not
-- tied to an alert: the analytics compare them with the station's analysers to find drift.
-- Samples attached to an event (event_samples, 0004) count too, through the event's station.
CREATE TABLE station_samples (
    id          bigserial PRIMARY KEY,
    station     text NOT NULL,
    parameter   text NOT NULL,
    value       double precision NOT NULL,
    unit        text NOT NULL,
    sampled_at  timestamptz NOT NULL,
    sample_id   text,
    entered_by  text NOT NULL,
    entered_at  timestamptz NOT NULL
);
CREATE INDEX station_samples_time ON station_samples (sampled_at, station);
