-- Exercise 5: chapter 5's tables, and the outbox (at the end).
--
-- Chapter 5: the same two tables as chapters 3 and 4. Nothing new is stored:
--   - a step's idempotency key is derived, never saved: `<workflow_id>:<seq>`,
--     the primary key of `steps`, (workflow_id, seq), written as text (see
--     stepKey in engine.ts);
--   - the workflow-level key is `workflows.id`: start(name, input, { id }) with
--     an id already here returns that run, provided `name` and `input` match.
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

-- Exercise 5: the outbox. One row per email to send, written by the workflow's
-- send_email step IN THE SAME TRANSACTION as the step's record: the row exists
-- if and only if the step is recorded. A relay (outbox.ts) sends the pending
-- rows later, each under its own key, and marks them sent.
CREATE TABLE IF NOT EXISTS outbox (
  key         text        PRIMARY KEY,             -- the send_email step's idempotency key, e.g. 'order-1:2'
  order_id    text        NOT NULL,
  payload     jsonb       NOT NULL,                -- the order the email confirms (what sendEmail needs)
  status      text        NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'sent')),
  email_id    text,                                -- the mail service's id for it, once sent
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz
);

-- The relay asks "what is still pending, oldest first?" on every pass.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at) WHERE status = 'pending';
