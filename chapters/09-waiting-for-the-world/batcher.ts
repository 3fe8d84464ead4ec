/**
 * Write-combining: many runs' writes of the same kind in one statement.
 *
 * Eight workflows running at once each record a step every millisecond or
 * so. Sent one by one, that is eight statements, eight commits, eight wake-ups
 * of PostgreSQL and of Node — on two shared cores, the CPU is what runs out
 * first, not the disk. So the step records (and the completions) of all runs
 * go through a batcher: while one statement is in flight, new writes wait;
 * when it returns, everything that waited goes out together, as one
 * multi-row fenced statement and one commit.
 *
 * It adds no delay: a write that finds nothing in flight is sent at once, so a
 * lone workflow sees one statement per step, as before. It only groups writes
 * that would otherwise queue for a connection anyway (River completes jobs the
 * same way; PostgreSQL's own group commit does it for WAL flushes, one level down).
 *
 * Each write still resolves only after its statement COMMITTED: a step
 * returns to the workflow code only once its record is durable.
 */

/** A batch failed because PostgreSQL chose it as a deadlock victim (40P01): nothing was written, send it again. */
function isDeadlock(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '40P01';
}

export interface Batcher<Item, Result> {
  /** Queue `item`; resolves with its result once the statement carrying it has committed. */
  write(item: Item): Promise<Result>;
}

/**
 * @param send writes `items` in ONE statement and says, per item, what came of it.
 * @param maxBatch at most this many items in a statement.
 */
export function createBatcher<Item, Result>(
  send: (items: Item[]) => Promise<Result[]>,
  { maxBatch = 64 }: { maxBatch?: number } = {},
): Batcher<Item, Result> {
  type Waiter = { item: Item; resolve: (result: Result) => void; reject: (error: unknown) => void };
  let queue: Waiter[] = [];
  let inFlight = false;

  async function flush(): Promise<void> {
    inFlight = true;
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      // Two batches locking the same rows in different orders (a completion
      // batch and the heartbeat's renewal) can deadlock; PostgreSQL then rolls
      // one back, whole. Sending it again is safe: nothing of it was written.
      for (let tries = 1; ; tries++) {
        try {
          const results = await send(batch.map((waiter) => waiter.item));
          batch.forEach((waiter, i) => waiter.resolve(results[i] as Result));
          break;
        } catch (error) {
          if (isDeadlock(error) && tries < 3) continue;
          for (const waiter of batch) waiter.reject(error);
          break;
        }
      }
    }
    inFlight = false;
  }

  return {
    write(item) {
      return new Promise<Result>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (!inFlight) void flush();
      });
    },
  };
}
