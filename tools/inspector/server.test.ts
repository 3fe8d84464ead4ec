/**
 * The inspector's server, over HTTP: its JSON, its escaping, its refusals
 * (no actions without --allow-actions, no cross-origin POST, no foreign Host),
 * where it binds, its live updates, and a database that goes away and comes back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, migrate } from '../../chapters/08-failures-and-time/index.ts';
import { freshPool, type TestPool } from '../../shared/testing/database.ts';
import { fixtureWorkflows } from './fixtures/workflows.ts';
import { DEFAULT_PORT, parseInspectorArgs } from './options.ts';
import { startInspector, type Inspector } from './server.ts';
import { readEvents, request, tcpProxy } from './testing.ts';

const XSS_ID = 'xss-<script>alert(1)</script>';
const XSS_NOTE = '<script>alert(1)</script><img src=x onerror=alert(2)>';
/** An id that would end a Server-Sent Event early if it were written raw. */
const FRAMING_ID = 'line\n\nevent: status\ndata: {"state":"forged"}';

let database: TestPool;
let inspector: Inspector;
let engine: ReturnType<typeof createEngine<typeof fixtureWorkflows>>;

beforeAll(async () => {
  database = await freshPool('inspector_server');
  await migrate(database.db);
  engine = createEngine({ db: database.db, workflows: fixtureWorkflows });
  // No worker: they stay runnable, as started.
  await engine.start('report', { stepMs: 10 }, { id: 'plain-1' });
  await engine.start('report', { note: XSS_NOTE }, { id: XSS_ID });
  await engine.start('report', {}, { id: FRAMING_ID });
  await engine.start('doomed', { card: '4242' }, { id: 'failed-1' });
  await database.db.query(`UPDATE workflows SET status = 'failed', error = 'card 4242 declined', updated_at = now() WHERE id = 'failed-1'`);
  inspector = await startInspector({ databaseUrl: database.url, pollMs: 100 });
});

afterAll(async () => {
  await inspector?.close();
  await database?.drop();
});

describe('where it listens', () => {
  it('binds 127.0.0.1 by default, on the port asked for (0: any free one)', () => {
    expect(inspector.host).toBe('127.0.0.1');
    expect(inspector.url).toBe(`http://127.0.0.1:${inspector.port}/`);
    expect(inspector.port).toBeGreaterThan(0);
  });

  it('the command line: 127.0.0.1 and port 7654 by default; another host only with a warning', () => {
    const defaults = parseInspectorArgs([]);
    expect(defaults).toMatchObject({ host: '127.0.0.1', port: DEFAULT_PORT, portGiven: false, allowActions: false, database: 'chapter_8_demo', warnings: [] });
    const exposed = parseInspectorArgs(['--host', '0.0.0.0', '--allow-actions', '--port', '0']);
    expect(exposed).toMatchObject({ host: '0.0.0.0', port: 0, portGiven: true, allowActions: true });
    expect(exposed.warnings.join('\n')).toMatch(/lets other machines open the inspector.*no login.*retry failed workflows/);
    expect(() => parseInspectorArgs(['--port', 'eighty'])).toThrow(/a port is a whole number/);
  });

  it('bound to loopback, it refuses a request addressed to another host (DNS rebinding)', async () => {
    const reply = await request(inspector.url, 'GET', '/api/workflows', { Host: `attacker.example:${inspector.port}` });
    expect(reply.status).toBe(403);
    expect(reply.json().error).toMatch(/answers only requests addressed to 127\.0\.0\.1/);
    expect((await request(inspector.url, 'GET', '/', { Host: `localhost:${inspector.port}` })).status).toBe(200);
  });
});

describe('pages and JSON', () => {
  it('serves one static page (no data in it) under a policy that runs only its own script', async () => {
    const reply = await request(inspector.url, 'GET', '/');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^text\/html/);
    expect(reply.headers['content-security-policy']).toContain("script-src 'self'");
    expect(reply.headers['x-content-type-options']).toBe('nosniff');
    expect(reply.body).toContain('<script src="/app.js" defer></script>');
    expect(reply.body).not.toContain('plain-1');
    const script = await request(inspector.url, 'GET', '/app.js');
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
    // The page builds its DOM from text nodes only.
    expect(script.body).not.toMatch(/\.innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
  });

  it('lists the workflows, newest first, filtered by status, name and age', async () => {
    const all = (await request(inspector.url, 'GET', '/api/workflows')).json();
    expect(all.workflows.map((w: { id: string }) => w.id).sort()).toEqual([FRAMING_ID, XSS_ID, 'failed-1', 'plain-1'].sort());
    expect(all.workflows[0].id).toBe('failed-1'); // changed last
    expect(all.workflows.find((w: { id: string }) => w.id === 'plain-1')).toMatchObject({ status: 'running', state: 'runnable', steps: 0, fencingToken: 0 });
    const ids = async (query: string) => (await request(inspector.url, 'GET', `/api/workflows?${query}`)).json().workflows.map((w: { id: string }) => w.id);
    expect(await ids('status=failed')).toEqual(['failed-1']);
    expect(await ids('name=doomed')).toEqual(['failed-1']);
    expect(await ids('newer=1h')).toHaveLength(4);
    expect(await ids('older=1h')).toEqual([]);
    const bad = await request(inspector.url, 'GET', '/api/workflows?status=sideways');
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatch(/status: one of running, completed, failed/);
    expect((await request(inspector.url, 'GET', '/api/workflows?newer=soon')).status).toBe(400);
  });

  it('shows one workflow: input, lease, attempts, timeline; markup in it is JSON text, never HTML', async () => {
    const reply = await request(inspector.url, 'GET', `/api/workflows/${encodeURIComponent(XSS_ID)}`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(reply.headers['x-content-type-options']).toBe('nosniff');
    const data = reply.json();
    expect(data.workflow).toMatchObject({ id: XSS_ID, input: { note: XSS_NOTE }, status: 'running', attempts: 0, maxAttempts: 5, fencingToken: 0 });
    expect(data.timeline.events.at(-1)).toMatchObject({ type: 'now', state: 'runnable' });
    expect((await request(inspector.url, 'GET', '/api/workflows/no-such-workflow')).status).toBe(404);
  });
});

describe('actions', () => {
  it('without --allow-actions every POST is refused with 403, and says how to allow it', async () => {
    const reply = await request(inspector.url, 'POST', '/api/workflows/failed-1/retry', { Origin: inspector.url.slice(0, -1), 'Content-Type': 'application/json' }, '{}');
    expect(reply.status).toBe(403);
    expect(reply.json().error).toMatch(/actions are off.*--allow-actions/);
    expect((await engine.status(['failed-1']))['failed-1']).toBe('failed');
  });

  it('with --allow-actions, a retry from the page itself works; from another origin, or with none, it is refused', async () => {
    const acting = await startInspector({ databaseUrl: database.url, allowActions: true });
    try {
      const origin = `http://127.0.0.1:${acting.port}`;
      const post = (headers: Record<string, string>) => request(acting.url, 'POST', '/api/workflows/failed-1/retry', { 'Content-Type': 'application/json', ...headers }, '{}');
      const foreign = await post({ Origin: 'http://attacker.example' });
      expect(foreign.status).toBe(403);
      expect(foreign.json().error).toMatch(/does not come from the inspector's own page.*Origin \(http:\/\/attacker\.example\)/);
      expect((await post({})).status).toBe(403);
      expect((await post({ Origin: origin, 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
      expect((await engine.status(['failed-1']))['failed-1']).toBe('failed');

      const retried = await post({ Origin: origin, 'Sec-Fetch-Site': 'same-origin' });
      expect(retried.status).toBe(200);
      expect(retried.json().message).toMatch(/runnable again/);
      expect((await engine.status(['failed-1']))['failed-1']).toBe('running');
      const again = await post({ Origin: origin });
      expect(again.status).toBe(409);
      expect(again.json().error).toMatch(/is running, not failed/);
    } finally {
      await acting.close();
    }
  });
});

describe('live', () => {
  it('pushes the list as it changes, over Server-Sent Events; an id with newlines cannot forge an event', async () => {
    const events = await readEvents(inspector.url, '/api/events?status=running');
    try {
      await events.next((e) => e.event === 'hello' && e.data.allowActions === false);
      await events.next((e) => e.event === 'status' && e.data.state === 'connected');
      const first = await events.next((e) => e.event === 'list');
      expect(first.data.workflows.map((w: { id: string }) => w.id)).toContain(FRAMING_ID);
      expect(events.events.filter((e) => e.event === 'status').map((e) => e.data.state)).not.toContain('forged');
      const seen = events.events.length;
      await engine.start('report', {}, { id: 'late-1' });
      const pushed = await events.next((e) => e.event === 'list' && e.data.workflows.some((w: { id: string }) => w.id === 'late-1'), { after: seen, timeoutMs: 5000 });
      expect(pushed.data.filter).toMatchObject({ status: 'running' });
    } finally {
      events.close();
    }
  });

  it('pushes a workflow page; one not in the log yet appears when it is started', async () => {
    const events = await readEvents(inspector.url, `/api/events?id=${encodeURIComponent('later-2')}`);
    try {
      expect((await events.next((e) => e.event === 'workflow')).data).toMatchObject({ found: false, id: 'later-2' });
      await engine.start('report', { note: 'hello' }, { id: 'later-2' });
      const found = await events.next((e) => e.event === 'workflow' && e.data.found, { timeoutMs: 5000 });
      expect(found.data.workflow.input).toEqual({ note: 'hello' });
    } finally {
      events.close();
    }
  });

  it('stays up while the database is away: says "database unavailable — retrying", answers 503, and "connected" once it is back', async () => {
    const server = new URL(database.url);
    const proxy = await tcpProxy({ host: server.hostname, port: Number(server.port) });
    const viaProxy = new URL(database.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    const watching = await startInspector({ databaseUrl: viaProxy.toString(), pollMs: 100 });
    const events = await readEvents(watching.url, '/api/events');
    try {
      await events.next((e) => e.event === 'status' && e.data.state === 'connected');
      await events.next((e) => e.event === 'list');
      await proxy.cut();
      const down = await events.next((e) => e.event === 'status' && e.data.state === 'unavailable', { timeoutMs: 15_000 });
      expect(down.data.message).toBe('database unavailable — retrying');
      const reply = await request(watching.url, 'GET', '/api/workflows');
      expect(reply.status).toBe(503);
      expect(reply.json().error).toBe('database unavailable — retrying');
      expect((await request(watching.url, 'GET', '/')).status).toBe(200); // the page itself is still served

      const since = events.events.length;
      await proxy.restore();
      await events.next((e) => e.event === 'status' && e.data.state === 'connected', { after: since, timeoutMs: 15_000 });
      await events.next((e) => e.event === 'list', { after: since, timeoutMs: 15_000 });
      expect((await request(watching.url, 'GET', '/api/workflows')).status).toBe(200);
    } finally {
      events.close();
      await watching.close();
      await proxy.close();
    }
  });

  it('a database without chapter 8 tables is said so, not a crash', async () => {
    const empty = await freshPool('inspector_empty');
    const bare = await startInspector({ databaseUrl: empty.url, pollMs: 100 });
    const events = await readEvents(bare.url, '/api/events');
    try {
      const status = await events.next((e) => e.event === 'status' && e.data.state === 'schema-missing');
      expect(status.data.message).toMatch(/no chapter 8 tables/);
      expect((await request(bare.url, 'GET', '/api/workflows')).status).toBe(503);
    } finally {
      events.close();
      await bare.close();
      await empty.drop();
    }
  });
});
