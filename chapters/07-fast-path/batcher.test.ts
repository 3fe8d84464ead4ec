/**
 * The write-combiner on its own: what goes out together, what goes out alone,
 * and what a failed statement does to the writes it carried.
 */
import { describe, expect, it } from 'vitest';
import { createBatcher } from './batcher.ts';

/** A `send` that records each statement's items and answers when the test says so. */
function controlledSend() {
  const statements: number[][] = [];
  const pending: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  const send = (items: number[]) => {
    statements.push(items);
    return new Promise<number[]>((resolve, reject) => {
      pending.push({ resolve: () => resolve(items.map((i) => i * 10)), reject });
    });
  };
  const answerNext = async () => {
    pending.shift()!.resolve();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { statements, pending, send, answerNext };
}

describe('the batcher', () => {
  it('a write with nothing in flight is sent at once, alone: no added delay', async () => {
    const { statements, send, answerNext } = controlledSend();
    const batcher = createBatcher(send);
    const written = batcher.write(1);
    expect(statements).toEqual([[1]]);
    await answerNext();
    expect(await written).toBe(10);
  });

  it('writes that arrive while a statement is in flight go out together in the next one, each with its own result', async () => {
    const { statements, send, answerNext } = controlledSend();
    const batcher = createBatcher(send);
    const first = batcher.write(1);
    const rest = [2, 3, 4].map((i) => batcher.write(i));
    expect(statements).toEqual([[1]]); // the others wait for the statement in flight
    await answerNext();
    expect(statements).toEqual([[1], [2, 3, 4]]);
    await answerNext();
    expect(await first).toBe(10);
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
  });

  it('a write resolves only after the statement carrying it has answered', async () => {
    const { send, answerNext } = controlledSend();
    const batcher = createBatcher(send);
    let done = false;
    void batcher.write(1).then(() => (done = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(false);
    await answerNext();
    expect(done).toBe(true);
  });

  it('no statement carries more than maxBatch writes', async () => {
    const { statements, send, answerNext } = controlledSend();
    const batcher = createBatcher(send, { maxBatch: 2 });
    const all = [1, 2, 3, 4, 5].map((i) => batcher.write(i));
    await answerNext();
    await answerNext();
    await answerNext();
    expect(statements).toEqual([[1], [2, 3], [4, 5]]);
    expect(await Promise.all(all)).toEqual([10, 20, 30, 40, 50]);
  });

  it('a statement that fails rejects every write it carried, and the next writes are sent as usual', async () => {
    const { statements, pending, send, answerNext } = controlledSend();
    const batcher = createBatcher(send);
    const first = batcher.write(1);
    const carried = [batcher.write(2), batcher.write(3)];
    await answerNext();
    pending.shift()!.reject(new Error('connection terminated'));
    await expect(Promise.all(carried.map((p) => p.catch((e: Error) => e.message)))).resolves.toEqual(['connection terminated', 'connection terminated']);
    expect(await first).toBe(10);
    const later = batcher.write(4);
    expect(statements.at(-1)).toEqual([4]);
    await answerNext();
    expect(await later).toBe(40);
  });

  it('a statement PostgreSQL picked as a deadlock victim (40P01) is sent again: nothing of it was written', async () => {
    let calls = 0;
    const batcher = createBatcher(async (items: number[]) => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
      return items;
    });
    expect(await batcher.write(7)).toBe(7);
    expect(calls).toBe(2);
  });
});
