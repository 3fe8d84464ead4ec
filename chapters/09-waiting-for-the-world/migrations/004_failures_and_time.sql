-- 004: failures and time — attempts counted in the log, failed step attempts
-- kept, and a workflow that waits (a retry's back-off, a sleep) with no lease.
--
-- No new clock and no new queue: a workflow that waits is one whose
-- `lease_expires_at` is in the future while nobody holds it. The claim already
-- reads "runnable" as `lease_expires_at <= now()` on the database clock, in
-- the index it already has; a back-off or a sleep is that timestamp set
-- ahead, by the run that goes to wait, in the same statement that records why
-- (the release, queries.ts). One timestamp for a lease, a back-off and a
-- sleep: nothing else to keep in step, and nothing runs early or is missed
-- because a worker's clock is off.

ALTER TABLE workflows
  -- Claims in a row after which no run recorded anything or reported back:
  -- +1 at each claim, back to 1 when the claim finds the previous one recorded
  -- a step, 0 when a run goes to wait. A workflow that kills every worker
  -- that runs it (out of memory, a segfault, process.exit in a library) has
  -- no run that can count its own death: the next claim does.
  ADD COLUMN attempts     int NOT NULL DEFAULT 0,
  -- More claims than this without a word, and the next claim fails the
  -- workflow instead of running it (start()'s maxAttempts; the engine's default).
  ADD COLUMN max_attempts int NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
  -- start()'s timeoutMs, as a time on the database clock: past it the workflow
  -- fails (DeadlineExceeded). A wait never outlasts it: a release sets
  -- lease_expires_at to the earlier of the two, so the workflow is claimed —
  -- and failed — when its deadline comes, even in the middle of a sleep.
  ADD COLUMN deadline_at  timestamptz;

-- What kind of entry a row of the log is. A step (plain or transaction: the
-- replay finds the same code either way) or a sleep, whose output is the time
-- it ends. Checked on replay with the name: a sleep where the code now calls a
-- step named "sleep" is a change of code, not the same thing.
ALTER TABLE steps
  ADD COLUMN kind  text  NOT NULL DEFAULT 'step' CHECK (kind IN ('step', 'sleep')),
  -- A step that failed for good (its retries ran out, or its error is not
  -- retryable): {"name": …, "message": …, "attempts": n}, output null. The
  -- replay throws it to the workflow again, the same every time.
  ADD COLUMN error jsonb;

-- Each failed attempt of a step, with the error it threw: the history an
-- operator reads, and what tells the next run which attempt it is on.
CREATE TABLE step_failures (
  workflow_id   text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  seq           int         NOT NULL,
  attempt       int         NOT NULL CHECK (attempt >= 1),
  name          text        NOT NULL,
  error         jsonb       NOT NULL,            -- {"name": "ServiceError", "message": "…"}
  fencing_token int         NOT NULL,            -- the claim whose run made the attempt
  retry_at      timestamptz,                     -- when the next attempt may start; null: there is none
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workflow_id, seq, attempt)
);

-- Schedules (schedules.ts): the last tick each schedule started, so ticks
-- missed while no scheduler ran are handled by the schedule's policy. Which
-- ticks run exactly once is not this table's job: a tick's time is its
-- workflow's id, and an id is inserted once.
CREATE TABLE schedules (
  name      text        PRIMARY KEY,
  last_tick timestamptz NOT NULL
);
