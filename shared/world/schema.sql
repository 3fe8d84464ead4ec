-- The demo world's inventory: the one effect of the order workflow that lives
-- in the workflow's own PostgreSQL database (charges and emails live in the
-- world server, another process). world.ts runs this file on every start, so
-- every statement must be safe to run again.

-- What is on the shelf. The CHECK is the last line of defence: even a buggy
-- reservation can never sell stock that is not there.
CREATE TABLE IF NOT EXISTS inventory (
  sku     text PRIMARY KEY,
  on_hand int  NOT NULL CHECK (on_hand >= 0)
);

-- Who took what: one row per reservation (delta < 0). The ledger counts these
-- rows per order to tell "reserved once" from "reserved twice".
CREATE TABLE IF NOT EXISTS stock_movements (
  id       bigserial   PRIMARY KEY,
  order_id text        NOT NULL,
  sku      text        NOT NULL,
  delta    int         NOT NULL,
  at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS stock_movements_order_id ON stock_movements (order_id);
