import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPool, type TestPool } from '../testing/database.ts';
import { rejectionOf } from '../testing/errors.ts';
import { describeEffects, exactlyOnce } from './ledger.ts';
import {
  chargeCard,
  demoOrder,
  OutOfStockError,
  reserveInventory,
  sendEmail,
  ServiceError,
  WorldNotRunningError,
  type Order,
} from './services.ts';
import { startWorld, type World } from './world.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '..', '..');

let database: TestPool;
let world: World;
let pool: pg.Pool;

beforeAll(async () => {
  database = await freshPool('world');
  world = await startWorld({ databaseUrl: database.url });
  pool = database.db;
});

afterAll(async () => {
  await world?.stop({ removeDir: true });
  await database?.drop();
});

/** Calls go to this file's world without touching process.env. */
const at = (key?: string) => ({ worldUrl: world.url, idempotencyKey: key });

describe('payments', () => {
  it('a charge is recorded once and survives a server restart', async () => {
    const own = await startWorld({ databaseUrl: database.url });
    try {
      const order = demoOrder('restart-1');
      const charge = await chargeCard(order, { worldUrl: own.url, idempotencyKey: 'restart-1/charge' });
      expect(charge).toMatchObject({ orderId: 'restart-1', amountCents: 4200 });
      expect(charge.id).toMatch(/^ch_/);

      // Not a polite shutdown: the server gets no chance to flush anything.
      const before = own.pid;
      process.kill(before, 'SIGKILL');
      await own.restartServer();
      expect(own.pid).not.toBe(before);

      const ledger = await own.ledger(); // same URL: a workflow's WORLD_URL stays valid
      expect(ledger.byOrder('restart-1').charges).toBe(1);
      expect(ledger.charges).toEqual([{ ...charge, idempotencyKey: 'restart-1/charge' }]);
      // The key survived too: a retry after the restart is a replay, not a second charge.
      const retried = await chargeCard(order, { worldUrl: own.url, idempotencyKey: 'restart-1/charge' });
      expect(retried.id).toBe(charge.id);
      expect((await own.ledger()).byOrder('restart-1').charges).toBe(1);
    } finally {
      await own.stop();
    }

    // A new world on the old directory finds the same ledger.
    const again = await startWorld({ databaseUrl: database.url, dir: own.dir });
    try {
      expect((await again.ledger()).byOrder('restart-1').charges).toBe(1);
    } finally {
      await again.stop({ removeDir: true });
    }
  });

  it('the same Idempotency-Key returns the same charge and records nothing new', async () => {
    const order = demoOrder('idem-1');
    const first = await chargeCard(order, at('idem-1/charge'));
    const second = await chargeCard(order, at('idem-1/charge'));
    expect(second).toEqual(first);

    // On the wire, the provider says it replayed.
    const response = await fetch(`${world.url}/payments/charges`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'idem-1/charge' },
      // Same parameters in another order are the same parameters.
      body: JSON.stringify({ customer: order.customer, amountCents: order.amountCents, orderId: order.orderId }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('idempotent-replayed')).toBe('true');
    expect(((await response.json()) as { id: string }).id).toBe(first.id);

    expect((await world.ledger()).byOrder('idem-1').charges).toBe(1);
    // Without a key, every call is a new charge.
    await chargeCard(demoOrder('idem-2'), at());
    await chargeCard(demoOrder('idem-2'), at());
    expect((await world.ledger()).byOrder('idem-2').charges).toBe(2);
  });

  it('the same key with a different body is a 400 idempotency_error', async () => {
    const order = demoOrder('idem-3');
    await chargeCard(order, at('idem-3/charge'));
    const error = await rejectionOf(chargeCard({ ...order, amountCents: 9999 }, at('idem-3/charge')));
    expect(error).toBeInstanceOf(ServiceError);
    expect(error).toMatchObject({ status: 400, type: 'idempotency_error', retryable: false });
    expect((error as Error).message).toContain('can only be used with the same parameters');
    expect((await world.ledger()).byOrder('idem-3').charges).toBe(1);
  });

  it('fail-next answers 503 and records nothing', async () => {
    await world.failNext('payments', 2);
    for (let i = 0; i < 2; i++) {
      const error = await rejectionOf(chargeCard(demoOrder('flaky-1'), at('flaky-1/charge')));
      expect(error).toBeInstanceOf(ServiceError);
      expect(error).toMatchObject({ status: 503, type: 'unavailable', retryable: true });
    }
    expect((await world.ledger()).byOrder('flaky-1').charges).toBe(0);
    // The key was not stored either: this retry is executed, for real, once.
    const charge = await chargeCard(demoOrder('flaky-1'), at('flaky-1/charge'));
    expect((await world.ledger()).charges.filter((c) => c.orderId === 'flaky-1')).toEqual([
      { ...charge, idempotencyKey: 'flaky-1/charge' },
    ]);

    await world.failNext('mail');
    expect(await rejectionOf(sendEmail(demoOrder('flaky-1'), at()))).toMatchObject({ status: 503, service: 'mail' });
    await sendEmail(demoOrder('flaky-1'), at());
    expect((await world.ledger()).byOrder('flaky-1').emails).toBe(1);
  });

  it('latency makes concurrent calls overlap, and one key still charges once', async () => {
    await world.setLatency(300);
    try {
      const started = Date.now();
      const [a, b] = await Promise.all([
        chargeCard(demoOrder('slow-1'), at('slow-1/charge')),
        chargeCard(demoOrder('slow-1'), at('slow-1/charge')),
      ]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(Date.now() - started).toBeLessThan(2000); // in parallel, not one after the other
      expect(b.id).toBe(a.id);
    } finally {
      await world.setLatency(0);
    }
    expect((await world.ledger()).byOrder('slow-1').charges).toBe(1);
  });

  it('bad input is a 400 with a clear message, an unknown route a 404', async () => {
    const post = (route: string, body: string) =>
      fetch(`${world.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    const cases: Array<[string, string, RegExp]> = [
      ['/payments/charges', '{"orderId": ', /not valid JSON/],
      ['/payments/charges', '{"orderId":"x","customer":"c"}', /Missing required param: amountCents/],
      ['/payments/charges', '{"orderId":"x","customer":"c","amountCents":"12"}', /amountCents must be an integer/],
      ['/mail/messages', '[]', /must be a JSON object/],
      ['/mail/messages', '{"orderId":"x","to":"a@b","subject":"s"}', /Missing required param: body/],
    ];
    for (const [route, body, message] of cases) {
      const response = await post(route, body);
      expect(response.status).toBe(400);
      const answer = (await response.json()) as { error: { type: string; message: string } };
      expect(answer.error.type).toBe('invalid_request_error');
      expect(answer.error.message).toMatch(message);
    }
    expect((await post('/payments/refunds', '{}')).status).toBe(404);
    expect((await fetch(`${world.url}/payments/charges`)).status).toBe(405);
  });

  it('without WORLD_URL the error says the world server is not running', async () => {
    const saved = process.env.WORLD_URL;
    delete process.env.WORLD_URL;
    try {
      const error = await rejectionOf(chargeCard(demoOrder('nowhere')));
      expect(error).toBeInstanceOf(WorldNotRunningError);
      expect((error as Error).message).toMatch(/world server is not running/);
    } finally {
      if (saved !== undefined) process.env.WORLD_URL = saved;
    }
  });
});

describe('inventory', () => {
  const gizmo = (orderId: string, sku = 'gizmo'): Order => ({ ...demoOrder(orderId), sku });

  it('reserveInventory decrements once per call and refuses to go below zero', async () => {
    await pool.query('INSERT INTO inventory (sku, on_hand) VALUES ($1, $2)', ['gizmo', 2]);

    expect(await reserveInventory(pool, gizmo('stock-1'))).toEqual({ onHand: 1 });
    expect(await reserveInventory(pool, gizmo('stock-2'))).toEqual({ onHand: 0 });

    const empty = await rejectionOf(reserveInventory(pool, gizmo('stock-3')));
    expect(empty).toBeInstanceOf(OutOfStockError);
    expect(empty).toMatchObject({ sku: 'gizmo', requested: 1, onHand: 0, retryable: false });
    expect(await rejectionOf(reserveInventory(pool, gizmo('stock-4', 'no-such-sku')))).toMatchObject({ onHand: null });

    // Inside a caller's transaction it is part of that transaction: rolled back, it never happened.
    await pool.query('UPDATE inventory SET on_hand = 5 WHERE sku = $1', ['gizmo']);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      expect(await reserveInventory(client, gizmo('stock-5'))).toEqual({ onHand: 4 });
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { rows } = await pool.query<{ on_hand: number }>('SELECT on_hand FROM inventory WHERE sku = $1', ['gizmo']);
    expect(rows[0]?.on_hand).toBe(5);

    const ledger = await world.ledger();
    expect(['stock-1', 'stock-2', 'stock-3', 'stock-4', 'stock-5'].map((id) => ledger.byOrder(id).stockDecrements)).toEqual([1, 1, 0, 0, 0]);
  });
});

describe('the ledger', () => {
  it('the ledger counts per order', async () => {
    const twice = demoOrder('count-1');
    await chargeCard(twice, at());
    await chargeCard(twice, at()); // no key: a second, real charge
    await reserveInventory(pool, twice);
    await sendEmail(twice, at());

    const once = demoOrder('count-2');
    await chargeCard(once, at('count-2/charge'));
    await reserveInventory(pool, once);
    await sendEmail(once, at('count-2/email'));

    const ledger = await world.ledger();
    expect(ledger.byOrder('count-1')).toEqual({ orderId: 'count-1', charges: 2, stockDecrements: 1, emails: 1 });
    expect(exactlyOnce(ledger.byOrder('count-1'))).toBe(false);
    expect(describeEffects(ledger.byOrder('count-1'))).toBe('charged 2×, stock −1, 1 email');

    expect(exactlyOnce(ledger.byOrder('count-2'))).toBe(true);
    expect(ledger.byOrder('never-seen')).toEqual({ orderId: 'never-seen', charges: 0, stockDecrements: 0, emails: 0 });
    expect(describeEffects(ledger.byOrder('never-seen'))).toBe('not charged, stock untouched, no email');
    expect(ledger.orders.map((o) => o.orderId)).toEqual(expect.arrayContaining(['count-1', 'count-2']));
  });
});

describe('crashes', () => {
  it('the world server survives the workflow side being SIGKILLed', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'fixtures', 'charge-then-die.ts'), 'killed-1'], {
      cwd: projectRoot,
      env: { ...process.env, ...world.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.once('close', (c, s) => resolve([c, s])),
    );
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });
    expect(stdout).toMatch(/^charged killed-1: ch_/);

    const ledger = await world.ledger();
    expect(ledger.byOrder('killed-1').charges).toBe(1);
    // And the world carries on serving.
    await chargeCard(demoOrder('after-the-crash'), at());
    expect((await world.ledger()).byOrder('after-the-crash').charges).toBe(1);
  });
});
