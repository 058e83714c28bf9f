-- 002: rollups, maintained by the consumer in the same transaction as the rows they count,
-- counting only rows actually inserted (never duplicates). Buckets are UTC-aligned
-- (date_trunc in UTC) and half-open: [bucket, bucket + width).
--
-- Analytics answers a range from the coarsest whole buckets inside it (day, then hour, then
-- minute) and only the partial sub-minute edges from public.events, so a 30-day question costs
-- O(buckets), not O(events).

CREATE TABLE IF NOT EXISTS public.epp_rollup_minute (
    bucket     timestamptz NOT NULL,
    event_name text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (bucket, event_name)
);

CREATE TABLE IF NOT EXISTS public.epp_rollup_hour (
    bucket     timestamptz NOT NULL,
    event_name text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (bucket, event_name)
);

CREATE TABLE IF NOT EXISTS public.epp_rollup_day (
    bucket     timestamptz NOT NULL,
    event_name text        NOT NULL,
    n          bigint      NOT NULL,
    PRIMARY KEY (bucket, event_name)
);

-- Which users were active on which UTC day, for exact unique-user counts: the distinct users
-- of a range are the union of the whole days' sets here and the users of the partial edges,
-- read from public.events. n counts that user's events of the day (so deletes can tell when a
-- user's last event of a day is gone).
CREATE TABLE IF NOT EXISTS public.epp_user_day (
    bucket  timestamptz NOT NULL,
    user_id text        NOT NULL,
    n       bigint      NOT NULL,
    PRIMARY KEY (bucket, user_id)
);
