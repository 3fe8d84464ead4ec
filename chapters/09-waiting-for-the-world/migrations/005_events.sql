-- 005: events — a workflow that waits for something the world sends.
--
-- An event is a row, sent to one workflow under a name (`payment`) and a key
-- (the sender's idempotency key: one event per workflow, name and key, however
-- often it is sent). It waits here until the workflow takes it: `ctx.waitForEvent`
-- takes the oldest event of its name not yet taken, and records it in the log
-- at the wait's position — so an event sent BEFORE the workflow waits is not
-- lost, and a replay returns the same event every time.
CREATE TABLE events (
  workflow_id  text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  name         text        NOT NULL,
  key          text        NOT NULL,
  payload      jsonb       NOT NULL,
  arrival      bigint      GENERATED ALWAYS AS IDENTITY,     -- the order events arrived in
  sent_at      timestamptz NOT NULL DEFAULT now(),
  taken_at_seq int,                                        -- the wait (its log position) that took it; null: not taken yet
  PRIMARY KEY (workflow_id, name, key)
);

-- What a wait asks: the oldest event of this name for this workflow that no wait has taken.
CREATE INDEX events_waiting ON events (workflow_id, name, arrival) WHERE taken_at_seq IS NULL;

-- The waits a workflow is parked in: one row per wait in progress — its
-- position in the log, the event's name, its timeout (database clock; null:
-- none). Kept here, not in the log: the log records how a wait ENDED (the
-- event, or the timeout), once; while it lasts, a replay must find the same
-- timeout, not start a new one. Several rows when the code waits for several
-- events at once (Promise.all over waits, or over children's results): the
-- workflow parks ONCE for all of them.
CREATE TABLE waits (
  workflow_id text        NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
  seq         int         NOT NULL,
  name        text        NOT NULL,
  until       timestamptz,
  PRIMARY KEY (workflow_id, seq)
);

-- What a send asks: does this workflow wait for this name, and how many times?
CREATE INDEX waits_by_name ON waits (workflow_id, name);

-- Parked for events: how many of its waits still lack one (null: not parked
-- for events). A send that fills one counts it down; the one that brings it
-- to 0 makes the workflow runnable — so 1,000 children ending wake their
-- parent once, not 1,000 times.
ALTER TABLE workflows ADD COLUMN waits_missing int;

-- A third kind of log entry: how a wait for an event ended.
ALTER TABLE steps DROP CONSTRAINT steps_kind_check;
ALTER TABLE steps ADD CONSTRAINT steps_kind_check CHECK (kind IN ('step', 'sleep', 'event'));
