-- PRV schedules in force (docs/api.md §8): one hourly set-point schedule per valve, written
-- by the service at each local hour. Applying replaces, cancelling deletes; the audit log has
-- every apply, cancel and write. `written_hour`/`written_m`: the last hour written.
CREATE TABLE prv_schedules (
    prv               text PRIMARY KEY,
    hourly_setting_m  double precision[] NOT NULL CHECK (cardinality(hourly_setting_m) = 24),
    timezone          text NOT NULL,
    source            text NOT NULL CHECK (source IN ('recommendation', 'request')),
    note              text,
    applied_by        text NOT NULL,
    applied_at        timestamptz NOT NULL,
    written_hour      timestamptz,
    written_m         double precision
);
