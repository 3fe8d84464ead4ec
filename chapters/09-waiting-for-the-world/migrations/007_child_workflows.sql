-- 007: child workflows — a workflow that starts others and waits for them.
--
-- A child is a workflow like any other, with its parent's id on its row. Its
-- id is derived from the parent's and the position of ctx.startChild in the
-- parent's log (`order-1/3`), so a replay of the parent finds the same child.
-- When the child ends — completed, failed or cancelled — the same statement
-- that records its end sends the parent an event (name `durable:child:<id>`,
-- key `end`, the outcome as payload) through the events' lock-first protocol:
-- the parent waits for it as for any event, holding no worker slot.
--
-- ON DELETE SET NULL, not CASCADE: pruning a finished parent must not delete
-- a child that still runs (a parent may end without waiting for a child).
ALTER TABLE workflows ADD COLUMN parent_id text REFERENCES workflows (id) ON DELETE SET NULL;

-- A parent's children: what cancel() walks down, and what `durable show` lists.
CREATE INDEX workflows_children ON workflows (parent_id) WHERE parent_id IS NOT NULL;

-- A fourth kind of log entry: a child started at this position (its id).
ALTER TABLE steps DROP CONSTRAINT steps_kind_check;
ALTER TABLE steps ADD CONSTRAINT steps_kind_check CHECK (kind IN ('step', 'sleep', 'event', 'child'));
