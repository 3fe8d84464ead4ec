/**
 * The demo world's outside services, as a process of their own.
 *
 * The course's order workflow charges a card, reserves stock and sends an
 * email. The card and the email go to services *outside* the workflow's
 * process — here, this small HTTP server:
 *
 *   POST /payments/charges   a payment provider that behaves like Stripe
 *   POST /mail/messages      a mail provider
 *   GET  /ledger             every charge and email ever made (tests count them)
 *   POST /admin/fail-next    { service, times }: the next calls answer 503
 *   POST /admin/latency      { ms }: every service call takes that long
 *
 * Crash tests SIGKILL the *workflow*; this server lives on, like Stripe does
 * when your laptop dies. Whatever it answered 200 to is in its ledger files
 * (fsynced before answering), so it survives even this server being killed.
 *
 *   node --import tsx shared/world/server.ts --dir <dir> [--port 0]
 *   → prints one line, WORLD_URL=http://127.0.0.1:PORT, and serves until SIGTERM/SIGINT.
 *
 * Tests and demos do not run it by hand: `world.ts` starts it for them.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runMain } from '../errors.ts';
import {
  serviceNames,
  type Charge,
  type ChargeRequest,
  type Email,
  type EmailRequest,
  type ErrorBody,
  type LedgerRecord,
  type ServiceName,
  type WorldLedger,
} from './protocol.ts';

/** An answer other than 200, with the `{ error: { type, message } }` body every error has. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const invalid = (message: string) => new HttpError(400, 'invalid_request_error', message);

// ─── The provider side of idempotency keys ──────────────────────────────────
//
// How a provider such as Stripe makes `Idempotency-Key` work, in miniature:
//
// 1. The provider keeps, per key, the request's parameters and the response
//    it gave. A request with a key it has seen gets that saved response again
//    (header `Idempotent-Replayed: true`) — the effect does not happen twice.
// 2. The same key with *different* parameters is a client bug (two operations
//    under one key); it is refused with 400 idempotency_error, not replayed.
// 3. The key is stored in the SAME durable write as the effect: one ledger
//    line holds { key, request, response }. There is no moment where the
//    charge exists but its key does not (a retry would charge again) or the
//    key exists without its charge (a retry would get an answer for nothing).
// 4. Looking the key up and recording the effect happen with nothing in
//    between that could let another request in: in this single-threaded
//    server that section has no `await`. (A real provider uses a unique index
//    or a lock. Stripe answers 409 to a concurrent request with the same key;
//    here the second simply gets the replay once the first has finished.)
// 5. Only requests that reached execution are saved: a request that fails
//    validation, or that we refuse with 503 before executing it, stores no
//    key — retrying it with the same key executes it for real.
//
// What we leave out: Stripe forgets keys after 24 hours and scopes them per
// account; ours are kept forever and scoped per service (payments, mail).

/** One line of a ledger file. */
interface LedgerLine<P, T> {
  key: string | null;
  request: P;
  response: T;
}

/**
 * A service's ledger: an append-only JSON-lines file, one line per effect,
 * fsynced before the service answers. Loaded back in full when the server
 * starts, which rebuilds the idempotency keys too.
 */
class DurableLedger<P, T> {
  private readonly fd: number;
  private readonly lines: LedgerLine<P, T>[] = [];
  private readonly byKey = new Map<string, LedgerLine<P, T>>();

  constructor(readonly file: string) {
    const existed = fs.existsSync(file);
    if (existed) this.load();
    this.fd = fs.openSync(file, 'a');
    // A new file is only durable once its directory entry is: fsync the directory.
    if (!existed) fsyncDirectory(path.dirname(file));
  }

  private load(): void {
    let text = fs.readFileSync(this.file, 'utf8');
    // A server killed in the middle of an append leaves a torn last line. That
    // record was never fsynced, so never answered: dropping it loses nothing a
    // client was told about. Cut it off so the next append starts on a new line.
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) {
      fs.truncateSync(this.file, end);
      text = text.slice(0, end);
    }
    text.split('\n').forEach((raw, index) => {
      if (raw === '') return;
      let line: LedgerLine<P, T>;
      try {
        line = JSON.parse(raw) as LedgerLine<P, T>;
      } catch (thrown) {
        throw new Error(`${this.file}, line ${index + 1}, is not JSON: the ledger is corrupt.`, { cause: thrown });
      }
      this.remember(line);
    });
  }

  private remember(line: LedgerLine<P, T>): void {
    this.lines.push(line);
    if (line.key !== null) this.byKey.set(line.key, line);
  }

  /**
   * Perform an effect at most once per idempotency key. `effect` builds the
   * response (it must not have side effects of its own: the ledger line IS the
   * effect). Synchronous from lookup to fsync — see point 4 above.
   */
  perform(key: string | null, request: P, effect: () => T): { response: T; replayed: boolean } {
    if (key !== null) {
      const saved = this.byKey.get(key);
      if (saved) {
        if (canonical(saved.request) !== canonical(request)) {
          throw new HttpError(
            400,
            'idempotency_error',
            'Keys for idempotent requests can only be used with the same parameters they were first used with.',
          );
        }
        return { response: saved.response, replayed: true };
      }
    }
    const line: LedgerLine<P, T> = { key, request, response: effect() };
    fs.appendFileSync(this.fd, `${JSON.stringify(line)}\n`);
    fs.fsyncSync(this.fd); // durable before we say 200: a client told "charged" stays charged
    this.remember(line);
    return { response: line.response, replayed: false };
  }

  records(): LedgerRecord<T>[] {
    return this.lines.map((line) => ({ ...line.response, idempotencyKey: line.key }));
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** JSON with sorted keys: the same parameters in another order are the same parameters. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

// ─── Request validation ─────────────────────────────────────────────────────

function object(body: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('The request body must be a JSON object.');
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  // Like Stripe: an unknown parameter is refused, not ignored (it is usually a typo).
  if (unknown.length) throw invalid(`Received unknown parameter: ${unknown.join(', ')}. Allowed: ${allowed.join(', ')}.`);
  return body as Record<string, unknown>;
}

function text(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (value === undefined) throw invalid(`Missing required param: ${field}.`);
  if (typeof value !== 'string' || value.trim() === '') throw invalid(`${field} must be a non-empty string.`);
  return value;
}

function integer(body: Record<string, unknown>, field: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = body[field];
  if (value === undefined) throw invalid(`Missing required param: ${field}.`);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}.`);
  }
  return value;
}

function parseCharge(raw: unknown): ChargeRequest {
  const body = object(raw, ['orderId', 'amountCents', 'customer']);
  return { orderId: text(body, 'orderId'), amountCents: integer(body, 'amountCents', 1), customer: text(body, 'customer') };
}

function parseEmail(raw: unknown): EmailRequest {
  const body = object(raw, ['orderId', 'to', 'subject', 'body']);
  return { orderId: text(body, 'orderId'), to: text(body, 'to'), subject: text(body, 'subject'), body: text(body, 'body') };
}

function idempotencyKey(req: http.IncomingMessage): string | null {
  const header = req.headers['idempotency-key'];
  if (header === undefined) return null;
  const key = Array.isArray(header) ? header[0] : header;
  if (!key || key.length > 255) throw invalid('Idempotency-Key must be 1 to 255 characters long.');
  return key;
}

const MAX_BODY = 1 << 20;

async function readJson(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'invalid_request_error', `The request body is larger than ${MAX_BODY} bytes.`);
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  if (raw.trim() === '') throw invalid('The request body is empty; expected a JSON object.');
  try {
    return JSON.parse(raw) as unknown;
  } catch (thrown) {
    throw invalid(`The request body is not valid JSON: ${(thrown as Error).message}`);
  }
}

// ─── The server ─────────────────────────────────────────────────────────────

export interface WorldServer {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  dir: string;
  /** Stop listening, end open connections, close the ledger files. */
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage) => Promise<{ status?: number; body: unknown; headers?: Record<string, string> }>;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Start the outside world in this process, its ledgers in `dir` (loaded back if they exist). */
export async function startWorldServer(options: { dir: string; port?: number; host?: string }): Promise<WorldServer> {
  const { dir, port = 0, host = '127.0.0.1' } = options;
  fs.mkdirSync(dir, { recursive: true });
  const payments = new DurableLedger<ChargeRequest, Charge>(path.join(dir, 'payments.jsonl'));
  const mail = new DurableLedger<EmailRequest, Email>(path.join(dir, 'mail.jsonl'));

  // Test knobs. Deliberately NOT durable: a restarted server starts healthy.
  const failNext: Record<ServiceName, number> = { payments: 0, mail: 0 };
  let latencyMs = 0;

  /** The path every service call takes: validate, wait, maybe fail, then perform once per key. */
  const serviceCall =
    <P, T>(service: ServiceName, ledger: DurableLedger<P, T>, parse: (raw: unknown) => P, create: (request: P) => T): Handler =>
    async (req) => {
      const request = parse(await readJson(req));
      const key = idempotencyKey(req);
      // The request is "in progress" this long. If the client dies meanwhile
      // (SIGKILL), we carry on regardless — like a real provider, which never
      // learns that nobody is waiting for the answer.
      if (latencyMs > 0) await sleep(latencyMs);
      // No `await` from here to the answer: see point 4 of the comment above.
      if (failNext[service] > 0) {
        failNext[service]--;
        throw new HttpError(503, 'unavailable', `The ${service} service is temporarily unavailable (injected fault); nothing was done. Retry the request.`);
      }
      const { response, replayed } = ledger.perform(key, request, () => create(request));
      return { body: response, headers: replayed ? { 'Idempotent-Replayed': 'true' } : undefined };
    };

  const now = () => new Date().toISOString();
  const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('hex')}`;

  const routes: Record<string, Record<string, Handler>> = {
    '/payments/charges': {
      POST: serviceCall('payments', payments, parseCharge, (r) => ({ id: newId('ch'), ...r, createdAt: now() })),
    },
    '/mail/messages': {
      POST: serviceCall('mail', mail, parseEmail, (r) => ({ id: newId('msg'), ...r, createdAt: now() })),
    },
    '/ledger': {
      GET: async () => ({ body: { charges: payments.records(), emails: mail.records() } satisfies WorldLedger }),
    },
    '/admin/fail-next': {
      POST: async (req) => {
        const body = object(await readJson(req), ['service', 'times']);
        const service = body.service;
        if (!serviceNames.includes(service as ServiceName)) throw invalid(`service must be one of ${serviceNames.join(', ')}.`);
        const times = body.times === undefined ? 1 : integer(body, 'times', 0, 1000);
        failNext[service as ServiceName] = times;
        return { body: { service, times } };
      },
    },
    '/admin/latency': {
      POST: async (req) => {
        latencyMs = integer(object(await readJson(req), ['ms']), 'ms', 0, 60_000);
        return { body: { ms: latencyMs } };
      },
    },
  };

  const server = http.createServer((req, res) => {
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const pathname = new URL(req.url ?? '/', 'http://world').pathname;
    const methods = Object.hasOwn(routes, pathname) ? routes[pathname] : undefined;
    const method = req.method ?? '';
    const handler = methods && Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (!methods) return send(404, errorBody('not_found', `No route ${req.method} ${pathname}.`));
    if (!handler) {
      return send(405, errorBody('method_not_allowed', `${pathname} accepts ${Object.keys(methods).join(', ')}.`), {
        Allow: Object.keys(methods).join(', '),
      });
    }
    handler(req).then(
      (answer) => send(answer.status ?? 200, answer.body, answer.headers),
      (thrown: unknown) => {
        if (thrown instanceof HttpError) return send(thrown.status, errorBody(thrown.type, thrown.message));
        process.stderr.write(`world server: ${req.method} ${pathname} failed: ${(thrown as Error)?.stack ?? String(thrown)}\n`);
        send(500, errorBody('api_error', `Internal error: ${(thrown as Error)?.message ?? String(thrown)}`));
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = (server.address() as AddressInfo).port;

  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${actualPort}`,
    port: actualPort,
    dir,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // keep-alive connections would hold close() open
      }).finally(() => {
        payments.close();
        mail.close();
      });
      return closed;
    },
  };
}

function errorBody(type: string, message: string): ErrorBody {
  return { error: { type, message } };
}

// ─── Run as a script ────────────────────────────────────────────────────────

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      port: { type: 'string', default: '0' },
      // Set by world.ts: our stdin is a pipe from the parent. When the parent
      // dies — even by SIGKILL, when no exit handler of its runs — the OS
      // closes that pipe and we see end-of-file: time to go, not to linger.
      'exit-with-parent': { type: 'boolean', default: false },
    },
  });
  if (!values.dir) throw new Error('usage: server.ts --dir <directory for the ledgers> [--port 0]');
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535, got ${values.port}`);

  const world = await startWorldServer({ dir: path.resolve(values.dir), port });
  const stop = () => {
    world.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (values['exit-with-parent']) {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
  // The one line the parent waits for.
  process.stdout.write(`WORLD_URL=${world.url}\n`);
}

function isMain(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return fs.realpathSync(script) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) runMain(main);
