-- 002: leases and fencing tokens.
--
-- A workflow is run by whoever holds its lease. The lease is three columns of
-- the workflow's own row, so claiming, renewing and checking it is one row
-- lock and one index, with nothing else to keep in step:
--
--   fencing_token     +1 at every claim. Every write a run makes (step record,
--                     transaction step, completion) names the token it was
--                     claimed with, and is refused once the token has moved on.
--   lease_owner       the worker that claimed it last, for people and the
--                     demo. Never checked: the token is what fences.
--   lease_expires_at  on the DATABASE clock (now() + lease). The workflow is
--                     runnable when this is in the past: a new workflow (the
--                     default, its creation time), a released one (set to
--                     now()), and one whose worker died. Workers never compare
--                     it with their own clocks.
--
-- The default now() is evaluated once, here (it is STABLE, not volatile), so
-- existing rows get a "fast default" and the table is not rewritten.
ALTER TABLE workflows
  ADD COLUMN fencing_token    int         NOT NULL DEFAULT 0,
  ADD COLUMN lease_owner      text,
  ADD COLUMN lease_expires_at timestamptz NOT NULL DEFAULT now();

-- The claim's index: unfinished rows only, in the order they became runnable.
-- A claim reads `lease_expires_at <= now()` as a range from the left, so the
-- rows held under a live lease (to the right of now()) are never even visited,
-- and completed workflows drop out of the index altogether.
DROP INDEX workflows_running;
CREATE INDEX workflows_runnable ON workflows (lease_expires_at) WHERE status = 'running';

-- Which claim wrote each step: lets anyone check that a fenced (stale) token
-- never wrote, and says which worker's run a step came from.
ALTER TABLE steps ADD COLUMN fencing_token int NOT NULL DEFAULT 0;
