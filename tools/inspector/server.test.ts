/**
 * The inspector's server, over HTTP: its JSON, its escaping, its refusals
 * (no actions without --allow-actions, no cross-origin POST, no foreign Host),
 * where it binds, its live updates, a database that goes away and comes back —
 * and chapter 9's parents and children, waits, events and cancellations, in
 * the list, on a workflow's page, and as the Cancel action.
 *
 * No worker runs here: the workflows stay as started, and the few states a
 * run would leave (a parent parked for its children's ends, a cancelled
 * workflow) are written as chapter 9's engine writes them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate as migrateChapter8 } from '../../chapters/08-failures-and-time/index.ts';
import { createEngine, migrate } from '../../chapters/09-waiting-for-the-world/index.ts';
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
  // An event whose key and payload hold markup, sent to a running workflow (kept until a wait takes it).
  await engine.send(XSS_ID, 'note', { html: XSS_NOTE }, { key: XSS_NOTE });
  // A batch parked for its two children's ends, as its run would have left it: the children's starts in its log
  // (token 1), released (token 2) until its waits are filled; one child has ended and sent its end.
  await engine.start('batch', { count: 2 }, { id: 'batch-1' });
  await database.db.query(
    `INSERT INTO workflows (id, name, input, parent_id, status, output, updated_at) VALUES
       ('batch-1/0', 'report', '{}', 'batch-1', 'completed', '{"url":"a"}', now()),
       ('batch-1/1', 'report', '{}', 'batch-1', 'running', NULL, now())`,
  );
  await database.db.query(
    `INSERT INTO steps (workflow_id, seq, name, kind, output, fencing_token) VALUES
       ('batch-1', 0, 'report', 'child', '{"id":"batch-1/0"}', 1), ('batch-1', 1, 'report', 'child', '{"id":"batch-1/1"}', 1)`,
  );
  await database.db.query(`INSERT INTO waits (workflow_id, seq, name, until) VALUES ('batch-1', 2, 'durable:child:batch-1/0', NULL), ('batch-1', 3, 'durable:child:batch-1/1', NULL)`);
  await database.db.query(`INSERT INTO events (workflow_id, name, key, payload) VALUES ('batch-1', 'durable:child:batch-1/0', 'end', '{"status":"completed","output":{"url":"a"}}')`);
  await database.db.query(
    `UPDATE workflows SET fencing_token = 2, lease_owner = NULL, lease_expires_at = timestamptz '9999-12-31 00:00:00+00', waits_missing = 1, updated_at = now() WHERE id = 'batch-1'`,
  );
  // A cancelled booking.
  await engine.start('booking', {}, { id: 'booking-1' });
  await database.db.query(
    `UPDATE workflows SET status = 'cancelled', cancel_requested_at = now(), cancel_reason = $1, error = $1, updated_at = now() WHERE id = 'booking-1'`,
    [`customer asked ${XSS_NOTE}`],
  );
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
    expect(defaults).toMatchObject({ host: '127.0.0.1', port: DEFAULT_PORT, portGiven: false, allowActions: false, database: 'chapter_9_demo', warnings: [] });
    const exposed = parseInspectorArgs(['--host', '0.0.0.0', '--allow-actions', '--port', '0']);
    expect(exposed).toMatchObject({ host: '0.0.0.0', port: 0, portGiven: true, allowActions: true });
    expect(exposed.warnings.join('\n')).toMatch(/lets other machines open the inspector.*no login.*retry failed workflows and cancel running ones/);
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

  it('lists the workflows, newest first, filtered by status (cancelled too), name and age', async () => {
    const all = (await request(inspector.url, 'GET', '/api/workflows')).json();
    const everyId = [FRAMING_ID, XSS_ID, 'failed-1', 'plain-1', 'batch-1', 'batch-1/0', 'batch-1/1', 'booking-1'];
    expect(all.workflows.map((w: { id: string }) => w.id).sort()).toEqual([...everyId].sort());
    expect(all.workflows[0].id).toBe('booking-1'); // changed last
    expect(all.workflows.find((w: { id: string }) => w.id === 'plain-1')).toMatchObject({ status: 'running', state: 'runnable', steps: 0, fencingToken: 0, parentId: null, children: 0 });
    const ids = async (query: string) => (await request(inspector.url, 'GET', `/api/workflows?${query}`)).json().workflows.map((w: { id: string }) => w.id);
    expect(await ids('status=failed')).toEqual(['failed-1']);
    expect(await ids('status=cancelled')).toEqual(['booking-1']);
    expect(await ids('name=doomed')).toEqual(['failed-1']);
    expect(await ids('newer=1h')).toHaveLength(everyId.length);
    expect(await ids('older=1h')).toEqual([]);
    const bad = await request(inspector.url, 'GET', '/api/workflows?status=sideways');
    expect(bad.status).toBe(400);
    expect(bad.json().error).toMatch(/status: one of running, completed, failed, cancelled/);
    expect((await request(inspector.url, 'GET', '/api/workflows?newer=soon')).status).toBe(400);
  });

  it('the list says who is whose child, how many children a parent has, and which events a parked workflow waits for', async () => {
    const rows = (await request(inspector.url, 'GET', '/api/workflows')).json().workflows;
    const row = (id: string) => rows.find((w: { id: string }) => w.id === id);
    expect(row('batch-1')).toMatchObject({ state: 'waiting', children: 2, childrenRunning: 1, parentId: null, waitEvents: ['durable:child:batch-1/0', 'durable:child:batch-1/1'], waitUntil: null });
    expect(row('batch-1/1')).toMatchObject({ parentId: 'batch-1', children: 0, waitEvents: null });
    expect(row('booking-1')).toMatchObject({ status: 'cancelled', state: 'cancelled' });
    expect(row('booking-1').cancelRequestedAt).not.toBeNull();
  });

  it('a parent’s page: its children in the order it started them, its waits (which have their event already), its events', async () => {
    const data = (await request(inspector.url, 'GET', `/api/workflows/${encodeURIComponent('batch-1')}`)).json();
    expect(data.children).toEqual([
      expect.objectContaining({ id: 'batch-1/0', status: 'completed', seq: 0 }),
      expect.objectContaining({ id: 'batch-1/1', status: 'running', seq: 1 }),
    ]);
    expect(data).toMatchObject({ childCount: 2, childrenByStatus: { completed: 1, running: 1 }, parent: null, cancel: null, eventCount: 1, eventsUntaken: 1 });
    expect(data.waiting).toMatchObject({ reason: 'event', events: ['durable:child:batch-1/0', 'durable:child:batch-1/1'], until: null, inMs: null });
    expect(data.waits).toEqual([
      expect.objectContaining({ seq: 2, child: 'batch-1/0', until: null, arrived: expect.objectContaining({ key: 'end' }) }),
      expect.objectContaining({ seq: 3, child: 'batch-1/1', arrived: null }),
    ]);
    expect(data.events).toEqual([expect.objectContaining({ name: 'durable:child:batch-1/0', key: 'end', takenAtSeq: null, child: 'batch-1/0', payload: { status: 'completed', output: { url: 'a' } } })]);
    const types = data.timeline.events.map((e: { type: string }) => e.type);
    expect(types).toEqual(['claim', 'child', 'wait', 'now']);
    expect(data.timeline.events[2]).toMatchObject({ reason: 'event', current: true, until: null });
    expect(data.timeline.events[3]).toMatchObject({ state: 'waiting' });

    // A child's page links back to its parent; its id holds a slash, percent-encoded in the path.
    const child = (await request(inspector.url, 'GET', `/api/workflows/${encodeURIComponent('batch-1/1')}`)).json();
    expect(child.parent).toEqual({ id: 'batch-1', name: 'batch', status: 'running' });
  });

  it('a cancelled workflow: when it was asked and why, as text', async () => {
    const data = (await request(inspector.url, 'GET', '/api/workflows/booking-1')).json();
    expect(data.workflow.status).toBe('cancelled');
    expect(data.cancel.reason).toBe(`customer asked ${XSS_NOTE}`);
    expect(data.timeline.events.map((e: { type: string }) => e.type)).toEqual(['cancel', 'now']);
    expect(data.timeline.events.at(-1)).toMatchObject({ state: 'cancelled' });
  });

  it('shows one workflow: input, lease, attempts, timeline; markup in it is JSON text, never HTML', async () => {
    const reply = await request(inspector.url, 'GET', `/api/workflows/${encodeURIComponent(XSS_ID)}`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(reply.headers['x-content-type-options']).toBe('nosniff');
    const data = reply.json();
    expect(data.workflow).toMatchObject({ id: XSS_ID, input: { note: XSS_NOTE }, status: 'running', attempts: 0, maxAttempts: 5, fencingToken: 0 });
    expect(data.timeline.events.at(-1)).toMatchObject({ type: 'now', state: 'runnable' });
    // Its event, whose key and payload hold markup: JSON strings.
    expect(data.events).toEqual([expect.objectContaining({ name: 'note', key: XSS_NOTE, payload: { html: XSS_NOTE }, takenAtSeq: null })]);
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

  it('Cancel: refused without --allow-actions; with it, from the page only — requested once (its running children with it), then already; a finished or unknown workflow is not', async () => {
    const cancelRequest = async (id: string) =>
      (await database.db.query<{ at: Date | null; reason: string | null }>('SELECT cancel_requested_at AS at, cancel_reason AS reason FROM workflows WHERE id = $1', [id])).rows[0];
    const readOnly = await request(inspector.url, 'POST', '/api/workflows/plain-1/cancel', { Origin: inspector.url.slice(0, -1), 'Content-Type': 'application/json' }, '{}');
    expect(readOnly.status).toBe(403);
    expect(readOnly.json().error).toMatch(/actions are off.*cancel running ones/);
    expect((await cancelRequest('plain-1'))!.at).toBeNull();

    const acting = await startInspector({ databaseUrl: database.url, allowActions: true });
    try {
      const origin = `http://127.0.0.1:${acting.port}`;
      const cancel = (id: string, headers: Record<string, string>, body = '{}') =>
        request(acting.url, 'POST', `/api/workflows/${encodeURIComponent(id)}/cancel`, { 'Content-Type': 'application/json', ...headers }, body);
      expect((await cancel('plain-1', { Origin: 'http://attacker.example' })).status).toBe(403);
      expect((await cancel('plain-1', {})).status).toBe(403);
      expect((await cancel('plain-1', { Origin: origin, 'Sec-Fetch-Site': 'cross-site' })).status).toBe(403);
      expect((await request(acting.url, 'GET', '/api/workflows/plain-1/cancel')).status).toBe(405);
      const badReason = await cancel('plain-1', { Origin: origin }, '{"reason": 42}');
      expect(badReason.status).toBe(400);
      expect(badReason.json().error).toMatch(/reason: a string of at most 10,000 characters/);
      expect((await cancel('plain-1', { Origin: origin }, JSON.stringify({ reason: 'x'.repeat(10_001) }))).status).toBe(400);
      expect((await cancel('plain-1', { Origin: origin }, 'not json')).status).toBe(400);
      expect((await cancelRequest('plain-1'))!.at).toBeNull();

      const asked = await cancel('plain-1', { Origin: origin, 'Sec-Fetch-Site': 'same-origin' }, JSON.stringify({ reason: XSS_NOTE }));
      expect(asked.status).toBe(200);
      expect(asked.json()).toMatchObject({ ok: true, outcome: 'requested' });
      expect(asked.json().message).toMatch(/cancellation requested.*ends cancelled/);
      expect(await cancelRequest('plain-1')).toMatchObject({ reason: XSS_NOTE });
      const twice = await cancel('plain-1', { Origin: origin }, JSON.stringify({ reason: 'again' }));
      expect(twice.status).toBe(200);
      expect(twice.json()).toMatchObject({ outcome: 'already' });
      expect(await cancelRequest('plain-1')).toMatchObject({ reason: XSS_NOTE }); // the first reason stays
      // No reason given: the inspector's own.
      expect((await cancel(FRAMING_ID, { Origin: origin }, '')).status).toBe(200);
      expect(await cancelRequest(FRAMING_ID)).toMatchObject({ reason: 'cancelled by an operator (the inspector)' });

      const finished = await cancel('booking-1', { Origin: origin });
      expect(finished.status).toBe(409);
      expect(finished.json().error).toMatch(/booking-1 is cancelled: nothing to cancel/);
      expect((await cancel('no-such-workflow', { Origin: origin })).status).toBe(404);

      // A parent: its running child is asked too (engine.cancel walks the tree); the parked parent is woken to end.
      expect((await cancel('batch-1', { Origin: origin }, JSON.stringify({ reason: 'batch withdrawn' }))).status).toBe(200);
      expect(await cancelRequest('batch-1/1')).toMatchObject({ reason: 'its parent batch-1 was cancelled: batch withdrawn' });
      expect((await cancelRequest('batch-1/0'))!.at).toBeNull(); // completed: nothing to ask
      const parent = (await request(acting.url, 'GET', '/api/workflows/batch-1')).json();
      expect(parent.cancel).toMatchObject({ reason: 'batch withdrawn' });
      expect(parent.waiting).toBeNull(); // runnable now: the next claim ends it
      expect(parent.timeline.events.map((e: { type: string }) => e.type)).toEqual(['claim', 'child', 'wait', 'cancel', 'now']);
      expect(parent.timeline.events[2]).toMatchObject({ reason: 'event', current: false, endedBy: 'cancel' });
      expect(parent.timeline.events.at(-1)).toMatchObject({ state: 'runnable', cancelRequested: true });
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

  it('a database without chapter 9 tables is said so, not a crash — an empty one, and one chapter 8 migrated', async () => {
    const empty = await freshPool('inspector_empty');
    const older = await freshPool('inspector_chapter8');
    await migrateChapter8(older.db);
    for (const url of [empty.url, older.url]) {
      const bare = await startInspector({ databaseUrl: url, pollMs: 100 });
      const events = await readEvents(bare.url, '/api/events');
      try {
        const status = await events.next((e) => e.event === 'status' && e.data.state === 'schema-missing');
        expect(status.data.message).toMatch(/no chapter 9 tables/);
        expect((await request(bare.url, 'GET', '/api/workflows')).status).toBe(503);
      } finally {
        events.close();
        await bare.close();
      }
    }
    await empty.drop();
    await older.drop();
  });
});
