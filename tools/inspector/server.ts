/**
 * The web inspector: "show me the run" for chapter 9's tables — the
 * workflows (filtered, newest first, with their parents and children), and
 * one workflow's input, output, lease or wait, attempts, deadline, the waits
 * it is parked in, the events sent to it, its children, a cancel request,
 * and its timeline (steps, failed attempts, back-offs, sleeps, parks for
 * events, children started, and which claim recorded what: takeovers
 * visible). Live: the page is pushed every change by Server-Sent Events (live.ts).
 *
 * Node's own http module and one static page (static/: plain HTML, CSS and
 * JavaScript, no build step). No framework, on purpose: it is a course tool
 * — a learner reads all of it in a sitting, `npm install` adds nothing to
 * run it, nothing has to be compiled before it starts, and there is no
 * dependency to keep patched in a tool that sits next to production data.
 * Five routes and a few hundred lines of DOM code do not need more.
 *
 *   GET  /                              the page (?id=… one workflow; ?status=…&name=…&newer=…&older=… the list)
 *   GET  /api/workflows?status&name&newer&older&limit   the list, as JSON
 *   GET  /api/workflows/<id>            one workflow with its timeline, as JSON
 *   GET  /api/events?<the page's query> the same, pushed as Server-Sent Events
 *   POST /api/workflows/<id>/retry      retryWorkflow — only with allowActions
 *   POST /api/workflows/<id>/cancel     requestCancel (engine.cancel's statement), body {"reason": "…"} optional — only with allowActions
 *
 * Safe by default:
 *   - it binds 127.0.0.1 (another host only when asked: tools/bin/inspector.ts warns);
 *   - bound to loopback, it answers only requests addressed to loopback (the
 *     Host header): a web page elsewhere cannot reach it by DNS rebinding;
 *   - it changes nothing unless started with allowActions; then a POST must
 *     come from the inspector's own page (its Origin is this server: CSRF);
 *   - the page builds its DOM with textContent only, and the Content-Security-Policy
 *     allows no script but its own file: an id or input holding `<script>` is text.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { getWorkflow, requestCancel, retryWorkflow } from '../../chapters/09-waiting-for-the-world/queries.ts';
import { Live, type StatusEvent } from './live.ts';
import { BadRequest, parseView, viewData, type View } from './views.ts';

export interface InspectorOptions {
  /** The database with chapter 9's tables. */
  databaseUrl: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Let the page retry failed workflows and cancel running ones (default false: read-only, POSTs refused with 403). */
  allowActions?: boolean;
  /** How often the server asks the database whether anything changed (default 250 ms). */
  pollMs?: number;
  /** Where the server's own lines go (the database going away and coming back). Default: nowhere. */
  log?: (line: string) => void;
}

export interface Inspector {
  /** http://host:port/ */
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** On every response. The page loads only its own script and style, and may not be framed. */
const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

/** The database's name, for the page's header: never the URL (it may carry a password). */
function databaseName(url: string): string {
  try {
    return decodeURIComponent(new URL(url).pathname.slice(1)) || '(default)';
  } catch {
    return '?';
  }
}

export async function startInspector(options: InspectorOptions): Promise<Inspector> {
  const host = options.host ?? '127.0.0.1';
  const allowActions = options.allowActions ?? false;
  const log = options.log ?? (() => {});
  const db = new pg.Pool({
    connectionString: options.databaseUrl,
    max: 4,
    application_name: 'durable-inspector',
    // A server that went away must fail our queries, not hang them: the page says so.
    connectionTimeoutMillis: 3000,
    query_timeout: 10_000,
    statement_timeout: 5000,
    keepAlive: true,
  });
  // A pooled connection the server ends (a restart) must not crash the inspector: the pool replaces it.
  db.on('error', () => {});
  db.on('connect', (client) => client.on('error', () => {}));
  const live = new Live(db, { pollMs: options.pollMs, log });
  const hello = { allowActions, database: databaseName(options.databaseUrl), pollMs: options.pollMs ?? 250 };
  const files = new Map(Object.entries(STATIC).map(([route, { file, type }]) => [route, { body: fs.readFileSync(new URL(`./static/${file}`, import.meta.url)), type }]));
  const streams = new Set<http.ServerResponse>();
  let port = 0;

  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  };
  const refuse = (res: http.ServerResponse, status: number, error: string) => json(res, status, { error });

  /** A database failure as an HTTP answer: 503 while it is away or not migrated, the pages' status says the same. */
  const databaseFailed = (res: http.ServerResponse, error: unknown) => {
    live.noteFailure(error);
    const status: StatusEvent = live.status;
    if (status.state === 'error') log(`inspector: ${(error as Error)?.message ?? error}`);
    refuse(res, status.state === 'error' ? 500 : 503, status.message);
  };

  /** Loopback-bound, only requests addressed to loopback; otherwise whatever the operator exposed it as. */
  const hostAllowed = (req: http.IncomingMessage): boolean => {
    if (!isLoopback(host)) return true;
    const header = (req.headers.host ?? '').toLowerCase();
    return ['127.0.0.1', 'localhost', '[::1]', host.includes(':') ? `[${host}]` : host].some((name) => header === `${name}:${port}`);
  };

  /** Why a state-changing request is not from the inspector's own page, or null when it is. */
  const crossOrigin = (req: http.IncomingMessage): string | null => {
    const origin = req.headers.origin;
    if (!origin) return 'it has no Origin header (a browser sends one with every POST; from a terminal, use npm run durable -- retry <id> or cancel <id>)';
    let parsed: URL;
    try {
      parsed = new URL(origin);
    } catch {
      return `its Origin (${origin}) is not a URL`;
    }
    if (parsed.protocol !== 'http:' || parsed.host !== req.headers.host) return `its Origin (${origin}) is not this inspector (http://${req.headers.host ?? '?'})`;
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return `the browser says it comes from another site (Sec-Fetch-Site: ${String(site)})`;
    return null;
  };

  const events = (req: http.IncomingMessage, res: http.ServerResponse, view: View) => {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // JSON.stringify never writes a raw newline, so one `data:` line holds any value: nothing in the log can end an event early.
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    res.write('retry: 2000\n\n');
    send('hello', hello);
    streams.add(res);
    const unsubscribe = live.subscribe(view, send);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(ping);
      unsubscribe();
      streams.delete(res);
    });
  };

  const retry = async (res: http.ServerResponse, id: string) => {
    if (await retryWorkflow(db, id)) return json(res, 200, { ok: true, message: `workflow ${id} is runnable again: the next claim replays its recorded steps and runs the rest` });
    const row = await getWorkflow(db, id);
    if (!row) return refuse(res, 404, `no workflow ${id} in the log`);
    return refuse(res, 409, `workflow ${id} is ${row.status}, not failed: nothing to retry`);
  };

  /** engine.cancel(id, { reason }): the same statement (requestCancel), which also NOTIFYs the worker holding it and wakes it if it waits. */
  const cancel = async (res: http.ServerResponse, id: string, reason: string) => {
    const found = await requestCancel(db, id, reason);
    if (!found) return refuse(res, 404, `no workflow ${id} in the log`);
    if (found.outcome === 'finished') return refuse(res, 409, `workflow ${id} is ${found.status}: nothing to cancel`);
    if (found.outcome === 'already') return json(res, 200, { ok: true, outcome: 'already', message: `workflow ${id}: cancellation was requested already; nothing changed` });
    return json(res, 200, {
      ok: true,
      outcome: 'requested',
      message: `workflow ${id}: cancellation requested — its run stops at its next step (its code may compensate first) and it ends cancelled; its children still running are cancelled with it`,
    });
  };

  /** An action's JSON body (`{}` when empty), at most 16 KiB. */
  const readBody = (req: http.IncomingMessage): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        text += chunk;
        if (text.length > 16_384) {
          reject(new BadRequest('the body is larger than 16 KiB'));
          req.destroy();
        }
      });
      req.on('end', () => {
        if (text.trim() === '') return resolve({});
        try {
          const body: unknown = JSON.parse(text);
          if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
          resolve(body as Record<string, unknown>);
        } catch {
          reject(new BadRequest('the body is not a JSON object'));
        }
      });
      req.on('error', reject);
    });

  /** The reason a cancel request gives: a string of at most 10,000 characters, as engine.cancel takes it; the inspector's own when none is given. */
  const reasonOf = (body: Record<string, unknown>): string => {
    const reason = body.reason;
    if (reason === undefined || reason === null || (typeof reason === 'string' && reason.trim() === '')) return 'cancelled by an operator (the inspector)';
    if (typeof reason !== 'string' || reason.length > 10_000) throw new BadRequest('reason: a string of at most 10,000 characters');
    return reason;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!hostAllowed(req)) {
      return refuse(res, 403, `this inspector answers only requests addressed to 127.0.0.1:${port} or localhost:${port} (this one was for ${req.headers.host ?? 'no host'})`);
    }
    const url = new URL(req.url ?? '/', 'http://inspector.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    const action = /^\/api\/workflows\/([^/]+)\/(retry|cancel)$/.exec(path);
    if (action || method === 'POST') {
      if (method !== 'POST') return refuse(res, 405, `${action![2]} is a POST`);
      if (!allowActions) return refuse(res, 403, 'actions are off: this inspector is read-only. Start it with --allow-actions to retry failed workflows and cancel running ones from the page (or use npm run durable -- retry <id> / cancel <id>).');
      const why = crossOrigin(req);
      if (why) return refuse(res, 403, `refused: this request does not come from the inspector's own page — ${why}`);
      if (!action) return refuse(res, 404, `no action at ${path}`);
      let id: string;
      try {
        id = decodeURIComponent(action[1]!);
      } catch {
        return refuse(res, 400, 'the workflow id in the path is not valid percent-encoding');
      }
      if (action[2] === 'retry') return retry(res, id).catch((error: unknown) => databaseFailed(res, error));
      let reason: string;
      try {
        reason = reasonOf(await readBody(req));
      } catch (error) {
        return refuse(res, 400, error instanceof BadRequest ? error.message : 'the body could not be read');
      }
      return cancel(res, id, reason).catch((error: unknown) => databaseFailed(res, error));
    }
    if (method !== 'GET' && method !== 'HEAD') return refuse(res, 405, `${method}: the inspector answers GET (and POST for actions)`);

    const file = files.get(path);
    if (file) {
      res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': file.type });
      return res.end(method === 'HEAD' ? undefined : file.body);
    }
    let view: View;
    try {
      if (path === '/api/events' || path === '/api/workflows') view = parseView(url.searchParams);
      else if (path.startsWith('/api/workflows/')) view = { kind: 'workflow', id: decodeURIComponent(path.slice('/api/workflows/'.length)) };
      else return refuse(res, 404, `nothing at ${path}`);
    } catch (error) {
      return refuse(res, 400, error instanceof BadRequest ? error.message : 'the path is not valid percent-encoding');
    }
    if (path === '/api/events') return events(req, res, view);
    if (path === '/api/workflows' && view.kind !== 'list') return refuse(res, 400, 'one workflow is /api/workflows/<id>');
    try {
      const data = await viewData(db, view);
      if ('found' in data && !data.found) return refuse(res, 404, `no workflow ${data.id} in the log`);
      return json(res, 200, data);
    } catch (error) {
      return databaseFailed(res, error);
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log(`inspector: ${(error as Error)?.stack ?? error}`);
      if (!res.headersSent) refuse(res, 500, 'the inspector failed to answer; its log says why');
      else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    host,
    port,
    async close() {
      live.close();
      for (const res of streams) res.end();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await db.end().catch(() => {});
    },
  };
}

