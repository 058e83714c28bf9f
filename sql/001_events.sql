-- 001: the event store (docs/contract.md §6) and the consumer's bookkeeping.
--
-- public.events is the public interface: these six columns, with these names, are what
-- Superset and users' SQL read. Everything else in this file is ours to change in later
-- migrations.

CREATE TABLE IF NOT EXISTS public.events (
    event_id     uuid        PRIMARY KEY,
    user_id      text        NOT NULL,
    event_name   text        NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}',
    "timestamp"  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Range scans at the partial edges of analytics ranges, and the plain-SQL baseline.
CREATE INDEX IF NOT EXISTS events_timestamp_idx ON public.events ("timestamp");
-- GET /analytics/users/{user_id}/events (newest first, keyset) and count?user_id=.
CREATE INDEX IF NOT EXISTS events_user_timestamp_idx
    ON public.events (user_id, "timestamp" DESC, event_id DESC);

-- Where each consumer group has got to, written in the same transaction as the rows it
-- describes: this table, not Kafka's committed offsets, is the truth about what is stored.
CREATE TABLE IF NOT EXISTS public.epp_consumer_offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
