/** Assertions on the world's ledger: what really happened to each order. */
import { expect } from 'vitest';
import { describeEffects, exactlyOnce } from '../world/ledger.ts';
import type { World } from '../world/world.ts';

/** Each order was charged once, its stock decremented once and one email sent; the failure names every order that was not. */
export async function expectExactlyOnce(world: World, orderIds: string[]): Promise<void> {
  const ledger = await world.ledger();
  expect(Object.fromEntries(orderIds.map((id) => [id, describeEffects(ledger.byOrder(id))]))).toEqual(
    Object.fromEntries(orderIds.map((id) => [id, 'charged 1×, stock −1, 1 email'])),
  );
  expect(orderIds.every((id) => exactlyOnce(ledger.byOrder(id)))).toBe(true);
}
