-- 006: cancellation — a workflow stopped on request, ending `cancelled`.
--
-- engine.cancel() writes the request on the workflow's row; the run that holds
-- the workflow hears of it (a NOTIFY, and its next heartbeat), aborts its
-- running step's signal and starts no further step — except those the
-- workflow runs in ctx.nonCancellable() to compensate — and records the end.
ALTER TABLE workflows DROP CONSTRAINT workflows_status_check;
ALTER TABLE workflows ADD CONSTRAINT workflows_status_check CHECK (status IN ('running', 'completed', 'failed', 'cancelled'));
ALTER TABLE workflows
  ADD COLUMN cancel_requested_at timestamptz,   -- when cancel() was called; null: not cancelled
  ADD COLUMN cancel_reason       text;          -- what the caller said, for people
