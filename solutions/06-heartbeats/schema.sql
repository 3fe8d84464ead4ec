-- Exercise 6: chapter 6's schema — its two migrations (migrations/001_log.sql,
-- 002_leases.sql) folded into one script, as the other exercises keep theirs.
-- Applied by createSchema() in queries.ts at every process start: every
-- statement is IF NOT EXISTS, so running it again changes nothing. (Chapter 6
-- numbers its migrations because a log that already exists needs an ALTER
-- TABLE, once; an exercise always starts from an empty schema.)
--
-- A workflow is run by whoever holds its lease. The lease is three columns of
-- the workflow's own row, so claiming, renewing and checking it is one row
-- lock and one index, with nothing else to keep in step:
--
--   fencing_token     +1 at every claim. Every write a run makes (step record,
--                     transaction step, completion) names the token it was
--                     claimed with, and is refused once the token has moved on.
--   lease_owner       the worker that claimed it last, for people to read.
--                     Never checked: the token is what fences.
--   lease_expires_at  on the DATABASE clock (now() + lease). The workflow is
--                     runnable when this is in the past: a new workflow (the
--                     default, its creation time), a released one (set to
--                     now()), and one whose worker died or stopped renewing.
--                     Workers never compare it with their own clocks.

-- One row per workflow: what to run (name, input), how it ended, and its lease.
CREATE TABLE IF NOT EXISTS workflows (
  id               text        PRIMARY KEY,             -- chosen by the caller, e.g. 'order-1': one id, one run
  name             text        NOT NULL,                -- which registered workflow: 'order'
  input            jsonb       NOT NULL,                -- what it was started with; replays use this, not the caller's copy
  status           text        NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'completed', 'failed')),
  output           jsonb,                               -- the workflow's return value, once completed
  error            text,                                -- why it failed, once failed
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  fencing_token    int         NOT NULL DEFAULT 0,
  lease_owner      text,
  lease_expires_at timestamptz NOT NULL DEFAULT now()
);

-- The claim's index: unfinished rows only, in the order they became runnable.
-- A claim reads `lease_expires_at <= now()` as a range from the left, so the
-- rows held under a live lease (to the right of now()) are never even visited,
-- and completed workflows drop out of the index altogether.
CREATE INDEX IF NOT EXISTS workflows_runnable ON workflows (lease_expires_at) WHERE status = 'running';

-- One row per step that finished and was recorded, keyed by its position in
-- the workflow (0, 1, 2, …); fencing_token is the claim whose run wrote it.
CREATE TABLE IF NOT EXISTS steps (
  workflow_id   text        NOT NULL REFERENCES workflows (id),
  seq           int         NOT NULL CHECK (seq >= 0),
  name          text        NOT NULL,                -- checked on replay: the code must call the same step here
  output        jsonb       NOT NULL,                -- the step's result; a step returning null stores JSON null
  created_at    timestamptz NOT NULL DEFAULT now(),
  fencing_token int         NOT NULL DEFAULT 0,
  PRIMARY KEY (workflow_id, seq)
);
