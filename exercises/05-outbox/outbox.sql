-- Exercise 5: the outbox, beside chapter 5's tables (createSchema in
-- chapters/05-idempotency-keys/ makes those; createOutbox in outbox.ts this).
-- One row per email to send, written by the workflow's send_email step IN THE
-- SAME TRANSACTION as the step's record: the row exists if and only if the
-- step is recorded. A relay (outbox.ts) sends the pending rows later, each
-- under its own key, and marks them sent.
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
