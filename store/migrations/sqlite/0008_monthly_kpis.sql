-- Monthly KPIs (docs/api.md, "Monthly KPIs"): aggregated by the analytics job from the stored
-- daily KPIs, so a month is whole although each run sees only its window. `month` is the
-- month's first day; `note` says why a figure may not be meaningful (ILI validity).
CREATE TABLE kpi_monthly (
    scope        TEXT NOT NULL CHECK (scope IN ('dma', 'point', 'zone', 'network')),
    subject      TEXT NOT NULL,
    month        TEXT NOT NULL CHECK (substr(month, 9, 2) = '01'),   -- YYYY-MM-01
    metric       TEXT NOT NULL,
    value        REAL,
    note         TEXT,
    computed_at  INTEGER NOT NULL,         -- µs since the epoch, UTC
    PRIMARY KEY (scope, subject, metric, month)
);
