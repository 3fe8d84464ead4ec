/**
 * The web inspector: "show me the run" for chapter 8's tables — the
 * workflows (filtered, newest first), and one workflow's input, output, lease
 * or wait, attempts, deadline and timeline (steps, failed attempts, back-offs,
 * sleeps, and which claim recorded what: takeovers visible). Live: the page
 * is pushed every change by Server-Sent Events (live.ts).
 *
 * Node's own http module and one static page (static/: plain HTML, CSS and
 * JavaScript, no build step). No framework, on purpose: it is a course tool
 * — a learner reads all of it in a sitting, `npm install` adds nothing to
 * run it, nothing has to be compiled before it starts, and there is no
 * dependency to keep patched in a tool that sits next to production data.
 * Four routes and a few hundred lines of DOM code do not need more.
 *
 *   GET  /                              the page (?id=… one workflow; ?status=…&name=…&newer=…&older=… the list)
 *   GET  /api/workflows?status&name&newer&older&limit   the list, as JSON
 *   GET  /api/workflows/<id>            one workflow with its timeline, as JSON
 *   GET  /api/events?<the page's query> the same, pushed as Server-Sent Events
 *   POST /api/workflows/<id>/retry      retryWorkflow — only with allowActions
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
import { getWorkflow, retryWorkflow } from '../../chapters/08-failures-and-time/queries.ts';
import { Live, type StatusEvent } from './live.ts';
import { BadRequest, parseView, viewData, type View } from './views.ts';

export interface InspectorOptions {
  /** The database with chapter 8's tables. */
  databaseUrl: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Let the page retry failed workflows (default false: read-only, POSTs refused with 403). */
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
    if (!origin) return 'it has no Origin header (a browser sends one with every POST; from a terminal, use npm run durable -- retry <id>)';
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

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!hostAllowed(req)) {
      return refuse(res, 403, `this inspector answers only requests addressed to 127.0.0.1:${port} or localhost:${port} (this one was for ${req.headers.host ?? 'no host'})`);
    }
    const url = new URL(req.url ?? '/', 'http://inspector.invalid');
    const path = url.pathname;
    const method = req.method ?? 'GET';

    const retryMatch = /^\/api\/workflows\/([^/]+)\/retry$/.exec(path);
    if (retryMatch || method === 'POST') {
      if (method !== 'POST') return refuse(res, 405, 'retry is a POST');
      if (!allowActions) return refuse(res, 403, 'actions are off: this inspector is read-only. Start it with --allow-actions to retry failed workflows from the page (or use npm run durable -- retry <id>).');
      const why = crossOrigin(req);
      if (why) return refuse(res, 403, `refused: this request does not come from the inspector's own page — ${why}`);
      if (!retryMatch) return refuse(res, 404, `no action at ${path}`);
      let id: string;
      try {
        id = decodeURIComponent(retryMatch[1]!);
      } catch {
        return refuse(res, 400, 'the workflow id in the path is not valid percent-encoding');
      }
      return retry(res, id).catch((error: unknown) => databaseFailed(res, error));
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

