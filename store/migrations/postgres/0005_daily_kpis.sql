-- Daily KPIs written by the analytics jobs (docs/api.md, "KPIs"): one value per scope, subject,
-- local day and metric. A job run replaces the values of the days it recomputed.
CREATE TABLE kpi_daily (
    scope        text NOT NULL CHECK (scope IN ('dma', 'point', 'zone', 'network')),
    subject      text NOT NULL,
    day          date NOT NULL,
    metric       text NOT NULL,
    -- NULL: not computable that day (missing data), which is not the same as zero.
    value        double precision,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, subject, metric, day)
);
