-- Daily KPIs written by the analytics jobs (docs/api.md, "KPIs"): one value per scope, subject,
-- local day and metric. A job run replaces the values of the days it recomputed.
CREATE TABLE kpi_daily (
    scope        TEXT NOT NULL CHECK (scope IN ('dma', 'point', 'zone', 'network')),
    subject      TEXT NOT NULL,
    day          TEXT NOT NULL,            -- YYYY-MM-DD, the network's local day
    metric       TEXT NOT NULL,
    -- NULL: not computable that day (missing data), which is not the same as zero.
    value        REAL,
    computed_at  INTEGER NOT NULL,         -- µs since the epoch, UTC
    PRIMARY KEY (scope, subject, metric, day)
);
