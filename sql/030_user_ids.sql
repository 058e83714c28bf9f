-- 030: the user dictionary -- a dense integer id (uid) for every user_id ever stored, the
-- members of the per-bucket user bitmaps (sql/031). Design: event_consumer/README.md, "Design:
-- the user dictionary and the user bitmaps".
--
-- A uid is assigned in the transaction that stores the user's first row (by the consumer or
-- epp-admin restore, through common/epp_users.c), so it is exactly as durable as that row. Rows
-- are only ever inserted: a uid is never changed, never reused, and stays when the user's
-- events are deleted. The sequence starts at 0 and stops at 2^32 - 1, the range of a 32-bit
-- Roaring bitmap; without a cache, only a rolled-back transaction leaves a gap.

CREATE SEQUENCE IF NOT EXISTS public.epp_user_uid_seq AS bigint
    MINVALUE 0 MAXVALUE 4294967295 START WITH 0 NO CYCLE;

CREATE TABLE IF NOT EXISTS public.epp_user_ids (
    user_id text   PRIMARY KEY,
    uid     bigint NOT NULL UNIQUE DEFAULT nextval('public.epp_user_uid_seq')
                   CHECK (uid >= 0 AND uid <= 4294967295)
);
ALTER SEQUENCE public.epp_user_uid_seq OWNED BY public.epp_user_ids.uid;

-- The users of a database migrated with data in it, in the order of their first event, under a
-- lock so that no row is stored between this and the first writer that assigns ids itself.
-- (Only into an empty dictionary: the file may be applied again by hand, e.g. by
-- bench/bench_analytics.sh on its cached data.)
LOCK TABLE public.events IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO public.epp_user_ids (user_id)
    SELECT user_id FROM public.events WHERE NOT EXISTS (SELECT 1 FROM public.epp_user_ids)
    GROUP BY user_id ORDER BY min("timestamp"), user_id
ON CONFLICT (user_id) DO NOTHING;
