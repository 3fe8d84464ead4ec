/**
 * For the inspector's tests: HTTP requests with any headers (a forged Host, a
 * foreign Origin), a Server-Sent Events reader, a TCP proxy in front of
 * PostgreSQL that can be cut and brought back (a database restart, as the
 * inspector sees it, without restarting the server other test files share),
 * and a fixture worker process.
 */
import http from 'node:http';
import net from 'node:net';
import { startChild, type ChildRun } from '../../shared/crash/runner.ts';
import { noColourEnv } from '../../shared/testing/output.ts';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = any>(): T;
}

/** One request to `base` (the inspector's URL), headers as given — Host and Origin included. */
export function request(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface SseEvent {
  event: string;
  data: any;
}

/** A Server-Sent Events stream, read as the browser's EventSource would: each event's data parsed as JSON. */
export interface SseReader {
  events: SseEvent[];
  /** The first event (from the start of the stream, or after `after`) that `match` accepts. */
  next(match: (event: SseEvent) => boolean, options?: { timeoutMs?: number; after?: number }): Promise<SseEvent>;
  close(): void;
}

export function readEvents(base: string, path: string): Promise<SseReader> {
  const url = new URL(path, base);
  const events: SseEvent[] = [];
  const waiters = new Set<() => void>();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`events: HTTP ${res.statusCode}`));
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length === 0) continue; // retry:, comments
          events.push({ event, data: JSON.parse(data.join('\n')) });
          for (const wake of [...waiters]) wake();
        }
      });
      resolve({
        events,
        next(match, { timeoutMs = 10_000, after = 0 } = {}) {
          return new Promise((found, fail) => {
            const look = () => {
              const hit = events.slice(after).find(match);
              if (!hit) return false;
              waiters.delete(check);
              clearTimeout(timer);
              found(hit);
              return true;
            };
            const check = () => void look();
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`no matching event within ${timeoutMs} ms; got: ${events.map((e) => `${e.event}${e.event === 'status' ? `(${e.data.state})` : ''}`).join(', ')}`));
            }, timeoutMs);
            if (!look()) waiters.add(check);
          });
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', (error) => reject(error));
  });
}

/** A TCP proxy on 127.0.0.1 in front of `target`: `cut()` refuses and drops every connection (a database gone), `restore()` brings it back on the same port. */
export async function tcpProxy(target: { host: string; port: number }) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        sockets.add(client).add(upstream);
        for (const socket of [client, upstream]) socket.on('error', drop).on('close', drop);
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolve();
      });
    });
  await listen();
  return {
    get port() {
      return port;
    },
    async cut() {
      const closed = new Promise<void>((resolve) => server?.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      sockets.clear();
      await closed;
    },
    restore: listen,
    async close() {
      await this.cut();
    },
  };
}

/** A fixture worker process (fixtures/worker.ts) named `name`, once it runs. */
export async function startFixtureWorker(databaseUrl: string, name: string): Promise<ChildRun> {
  const worker = startChild({ script: 'tools/inspector/fixtures/worker.ts', env: { ...noColourEnv, DATABASE_URL: databaseUrl, WORKER_NAME: name }, timeoutMs: 120_000 });
  await worker.waitForLine(/running/, 30_000);
  return worker;
}

/** What console.log prints from here until `restore()`, kept instead of shown. */
export function captureConsole(): { text(): string; restore(): void } {
  const original = console.log;
  const lines: string[] = [];
  console.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
  return { text: () => lines.join('\n'), restore: () => void (console.log = original) };
}
