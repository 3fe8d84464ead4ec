-- Exercise 4: chapter 4's tables, and one column more: `steps.error`. A step
-- that failed for good (its error says `retryable: false`, like OutOfStockError)
-- is recorded too — output JSON null, error its message — so a restart replays
-- the failure instead of running the step again, and the compensations after it
-- keep their positions.
--
-- Chapter 4: the same two tables as chapter 3. What changes is *when* a step's
-- row is written: in the same transaction as the step's business writes
-- (the inventory table lives in this database too).
--
-- Chapter 3: the log as two tables.
--
-- Chapter 2 kept  { workflows: { id: { status, steps: { name: result }, output } } }
-- in one JSON file. Here the same log is two tables: one row per workflow, one
-- row per recorded step. Recording a step is one INSERT of one row, so two
-- processes never overwrite each other's records.
--
-- Applied by createSchema() in queries.ts, at every process start: every
-- statement is IF NOT EXISTS, so running it again changes nothing.

-- One row per workflow: what to run (name, input), and how it ended.
CREATE TABLE IF NOT EXISTS workflows (
  id          text        PRIMARY KEY,             -- chosen by the caller, e.g. 'order-1'
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
  error       text,                                -- set when the step failed for good: its error's message
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, seq)
);
