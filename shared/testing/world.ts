/**
 * A fresh world for one test: its own database on the run's server, its own
 * payment/mail server process and ledger — removed afterwards, pass or fail.
 *
 *   await withWorld('recover', async (world) => { …runUntilDone({ env: world.env })… });
 */
import { startWorld, type World } from '../world/world.ts';
import { freshDatabase } from './database.ts';

export async function withWorld(label: string, test: (world: World) => Promise<void>): Promise<void> {
  const database = await freshDatabase(label);
  const world = await startWorld({ databaseUrl: database.url });
  try {
    await test(world);
  } finally {
    await world.stop({ removeDir: true });
    await database.drop().catch(() => {});
  }
}
