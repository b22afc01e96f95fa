-- Monthly KPIs (docs/api.md, "Monthly KPIs"): aggregated by the analytics job from the stored
-- daily KPIs, so a month is whole although each run sees only its window. `month` is the
-- month's first day; `note` says why a figure may not be meaningful (ILI validity).
CREATE TABLE kpi_monthly (
    scope        text NOT NULL CHECK (scope IN ('dma', 'point', 'zone', 'network')),
    subject      text NOT NULL,
    month        date NOT NULL CHECK (extract(day FROM month) = 1),
    metric       text NOT NULL,
    value        double precision,
    note         text,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, subject, metric, month)
);
