-- A row of `attempt_stats_log` counts the attempts of one webhook in one second and latency
-- class that one recording wrote, rather than one attempt each: a recording of many outcomes
-- (most of them the same webhook's, the same second) appends a row or two instead of one per
-- attempt, and the fold moves that many fewer. Rows written before this count one attempt, as
-- they did.

ALTER TABLE attempt_stats_log ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
