-- 004: epp_user_day becomes a set of (UTC day, user_id) pairs: exact distinct-user counts need
-- only to know whether a user had an event that day, not how many. With the count gone, a pair
-- already stored needs no write at all, so the consumer keeps a cache of the pairs it knows are
-- stored and sends only new ones (INSERT ... ON CONFLICT DO NOTHING) -- instead of one
-- upsert per (day, user) of every batch, which was 35-45 % of its transaction time.
--
-- Deleting pairs is the one thing a cache cannot see, hence public.epp_rollup_generation: a
-- transaction that deletes from epp_user_day (epp-admin delete-test: it removes the pairs of the
-- deleted events' (day, user) that have no event left that day) first increments the
-- generation -- taking that row's lock -- and every consumer transaction first reads the
-- generation FOR SHARE and empties its cache when it changed. The lock orders the two: a
-- consumer transaction that read the old generation commits before the deleter looks for
-- remaining events (so its events are seen), and one that starts later waits for the deleter's
-- COMMIT and then sees the new generation.

-- Rows whose count fell to zero (a delete left them) stand for absent pairs.
DELETE FROM public.epp_user_day WHERE n <= 0;
ALTER TABLE public.epp_user_day DROP COLUMN n;

CREATE TABLE IF NOT EXISTS public.epp_rollup_generation (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id), -- one row
    generation bigint  NOT NULL
);
INSERT INTO public.epp_rollup_generation (id, generation) VALUES (true, 0)
ON CONFLICT (id) DO NOTHING;
