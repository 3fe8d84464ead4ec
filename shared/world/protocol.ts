/**
 * The wire format between the workflow and the demo world's outside services:
 * what a request carries and what comes back. Both sides import these types —
 * the server (`server.ts`) and the workflow's client (`services.ts`) — so they
 * cannot drift apart.
 */

/** POST /payments/charges */
export interface ChargeRequest {
  orderId: string;
  amountCents: number;
  customer: string;
}

/** A charge, as the payments service answers it (and as it keeps it in its ledger). */
export interface Charge {
  id: string; // "ch_…"
  orderId: string;
  amountCents: number;
  customer: string;
  createdAt: string; // ISO 8601
}

/** POST /mail/messages */
export interface EmailRequest {
  orderId: string;
  to: string;
  subject: string;
  body: string;
}

/** A sent email, as the mail service answers it. */
export interface Email {
  id: string; // "msg_…"
  orderId: string;
  to: string;
  subject: string;
  body: string;
  createdAt: string;
}

/**
 * One line of a service's ledger file, and one entry of GET /ledger: the
 * effect, plus the idempotency key it was made under (null: no key was sent).
 */
export type LedgerRecord<T> = T & { idempotencyKey: string | null };

/** GET /ledger */
export interface WorldLedger {
  charges: LedgerRecord<Charge>[];
  emails: LedgerRecord<Email>[];
}

/**
 * Every error answer has this shape (the one Stripe uses):
 *   400 invalid_request_error — bad JSON, a missing field, a wrong type
 *   400 idempotency_error     — a key reused with different parameters
 *   404 not_found, 405 method_not_allowed
 *   503 unavailable           — injected with POST /admin/fail-next; retry it
 */
export interface ErrorBody {
  error: { type: string; message: string };
}

export type ServiceName = 'payments' | 'mail';
export const serviceNames: readonly ServiceName[] = ['payments', 'mail'];
