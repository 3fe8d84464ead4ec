-- 001: the log, as chapters 3 to 5 built it — chapter 5's schema.sql, unchanged
-- below this header. Its IF NOT EXISTS lets a database chapter 5 created adopt
-- the migrations: 001 finds its tables there, 002 adds the leases.
--
-- Chapter 5: nothing new is stored. A step's idempotency key is derived,
-- `<workflow_id>:<seq>`; the workflow-level key is `workflows.id`.
--
-- Applied once, by migrate.ts. Never edit a migration that has shipped: a
-- change to the schema is a new numbered file (see 002_leases.sql).

-- One row per workflow: what to run (name, input), and how it ended.
CREATE TABLE IF NOT EXISTS workflows (
  id          text        PRIMARY KEY,             -- chosen by the caller, e.g. 'order-1': one id, one run
  name        text        NOT NULL,                -- which registered workflow: 'order'
  input       jsonb       NOT NULL,                -- what it was started with; replays use this, not the caller's copy
  status      text        NOT NULL DEFAULT 'running'
                          CHECK (status IN ('running', 'completed', 'failed')),
  output      jsonb,                               -- the workflow's return value, once completed
  error       text,                                -- why it failed, once failed
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- recover() asks "which workflows are unfinished?" at every start. This
-- index holds only those rows, so the answer stays cheap however many
-- workflows have completed.
CREATE INDEX IF NOT EXISTS workflows_running ON workflows (created_at) WHERE status = 'running';

-- One row per step that finished and was recorded.
-- The key is the step's *position* in the workflow (0, 1, 2, …), not its name:
-- a loop may call the same step name many times, and each call is its own row.
CREATE TABLE IF NOT EXISTS steps (
  workflow_id text        NOT NULL REFERENCES workflows (id),
  seq         int         NOT NULL CHECK (seq >= 0),
  name        text        NOT NULL,                -- checked on replay: the code must call the same step here
  output      jsonb       NOT NULL,                -- the step's result; a step returning null stores JSON null
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, seq)
);
