-- 003: leave room in the rollup tables' pages so that the consumer's per-batch upserts
-- (n = n + delta) are HOT updates: the new row version stays on its page and no index entry is
-- added. At fillfactor 100 nearly every update of a full page moved the row and grew the primary
-- key index. Applies to pages written from now on (existing pages fill up as before).
ALTER TABLE public.epp_rollup_minute SET (fillfactor = 50);
ALTER TABLE public.epp_rollup_hour SET (fillfactor = 50);
ALTER TABLE public.epp_rollup_day SET (fillfactor = 50);
ALTER TABLE public.epp_user_day SET (fillfactor = 50);
