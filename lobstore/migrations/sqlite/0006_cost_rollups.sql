-- Hourly sums of cost events per model, kept in the same transaction as the events, so a
-- summary over whole hours reads a few hundred rows instead of every event in the range.
-- Partial hours at either end of a range are still added up from the events themselves.

CREATE TABLE cost_rollups (
    hour                DATETIME NOT NULL,
    model               TEXT NOT NULL,
    cost_micro          BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cache_read_tokens   BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    events              BIGINT NOT NULL,
    costed_events       BIGINT NOT NULL,
    PRIMARY KEY (hour, model)
);

-- Events stored before this migration. Timestamps are text 'YYYY-MM-DD HH:MM:SS.ffffff'
-- (SQLAlchemy's form): the hour is written in that same form so it compares as text.
INSERT INTO cost_rollups
SELECT strftime('%Y-%m-%d %H:00:00.000000', created_at), model, coalesce(sum(cost_micro), 0),
       sum(input_tokens), sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
       count(*), count(cost_micro)
FROM cost_events
GROUP BY 1, 2;
