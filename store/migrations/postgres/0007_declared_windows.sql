-- Declared windows (docs/api.md, "Declared windows"): compliance exclusions for declared
-- events and quality-station maintenance. Withdrawn windows stay, marked, for the record; the
-- audit log has every declaration and withdrawal.
CREATE TABLE declared_windows (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('exclusion', 'maintenance')),
    dma           text,
    station       text,
    sensor        text,
    from_time     timestamptz NOT NULL,
    to_time       timestamptz NOT NULL,
    reason        text NOT NULL,
    declared_by   text NOT NULL,
    declared_at   timestamptz NOT NULL,
    withdrawn_by  text,
    withdrawn_at  timestamptz,
    CHECK ((dma IS NOT NULL)::int + (station IS NOT NULL)::int + (sensor IS NOT NULL)::int = 1),
    CHECK (from_time < to_time)
);
CREATE INDEX declared_windows_span ON declared_windows (to_time, from_time);
