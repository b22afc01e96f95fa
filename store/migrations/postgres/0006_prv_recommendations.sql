-- PRV set-point recommendations written by the analytics job (docs/pressure.md, "PRV
-- recommendations"): the latest one per valve, replaced by every run.
CREATE TABLE prv_recommendations (
    prv          text PRIMARY KEY,
    dma          text NOT NULL,
    computed_at  timestamptz NOT NULL,
    -- The recommendation (fixed set point, hourly schedule, expected effect) or why there is
    -- none, as the API returns it.
    body         jsonb NOT NULL
);
