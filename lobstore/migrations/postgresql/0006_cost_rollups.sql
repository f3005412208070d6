-- Hourly sums of cost events per model, kept in the same transaction as the events, so a
-- summary over whole hours reads a few hundred rows instead of every event in the range.
-- Partial hours at either end of a range are still added up from the events themselves.

CREATE TABLE cost_rollups (
    hour                timestamptz NOT NULL,
    model               text NOT NULL,
    cost_micro          bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    cache_read_tokens   bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    events              bigint NOT NULL,
    costed_events       bigint NOT NULL,
    PRIMARY KEY (hour, model)
);

-- Events stored before this migration, bucketed by the UTC hour whatever the session's zone.
INSERT INTO cost_rollups
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', model,
       coalesce(sum(cost_micro), 0), sum(input_tokens), sum(output_tokens),
       sum(cache_read_tokens), sum(cache_write_tokens), count(*), count(cost_micro)
FROM cost_events
GROUP BY 1, 2;
