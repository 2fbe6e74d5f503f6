-- 0002_dead_letters: history events Postgres refused, kept apart so they never block the events
-- behind them.
--
-- The outbox relay applies events in batches; when a batch fails for a reason that retrying
-- cannot fix (a value Postgres refuses, say), it applies the batch's events one at a time, tries
-- each failing one a few times more, and then moves it here with the reason, acknowledging it
-- in Redis (src/store/redis/relay.rs). `fields` is the outbox entry as escaped text (the same
-- value that was refused could not be stored as it was).
CREATE TABLE history_dead_letters (
    event_id     text PRIMARY KEY,
    stream_type  text NOT NULL,
    fields       text NOT NULL,
    reason       text NOT NULL,
    attempts     integer NOT NULL CHECK (attempts > 0),
    dead_at      timestamptz NOT NULL
);

CREATE INDEX history_dead_letters_by_time ON history_dead_letters (dead_at);
