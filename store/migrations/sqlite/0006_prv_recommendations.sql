-- PRV set-point recommendations written by the analytics job (docs/pressure.md, "PRV
-- recommendations"): the latest one per valve, replaced by every run.
CREATE TABLE prv_recommendations (
    prv          TEXT PRIMARY KEY,
    dma          TEXT NOT NULL,
    computed_at  INTEGER NOT NULL,         -- µs since the epoch, UTC
    -- The recommendation (fixed set point, hourly schedule, expected effect) or why there is
    -- none, as the API returns it (JSON text).
    body         TEXT NOT NULL
);
