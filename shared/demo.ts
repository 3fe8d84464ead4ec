/**
 * What every chapter's narrated demo (`npm run chapter N`) needs: a real
 * database and a fresh world, a way to run the chapter's process while showing
 * its output live, kill it, restart it, and show the ledger at the end.
 *
 * A chapter's `demo.ts` tells its story with these:
 *
 *   await demo(3, async ({ world, run, ledger }) => {
 *     say.explain('We start order-1 and kill the process right after the charge…');
 *     await run({ orders: ['order-1'], faults: ['after-effect:charge_card'] });
 *     await ledger(['order-1']);
 *   });
 */
import { runUntilDone, type Fault, type RunResult } from './crash/runner.ts';
import { recreateDatabase } from './db/databases.ts';
import { startPostgres, type PostgresServer } from './db/server.ts';
import { runMain } from './errors.ts';
import { ledgerTable, paint, say } from './narrate.ts';
import { findChapter, type Chapter } from './scenarios.ts';
import { exactlyOnce, type Ledger } from './world/ledger.ts';
import { startWorld, type World } from './world/world.ts';

export interface DemoRun {
  orders: string[];
  /** faults[i] kills process #i+1; later processes run clean. */
  faults?: Fault[];
  /** The command for the first process (default: `start <orders>`). */
  args?: string[];
  /** The command for restarts (default: the same). */
  restartArgs?: string[];
  /** Extra environment for these processes (e.g. LOG_WRITER=naive in chapter 2). */
  env?: Record<string, string>;
  maxAttempts?: number;
}

export interface DemoKit {
  chapter: Chapter;
  server: PostgresServer;
  world: World;
  databaseName: string;
  /** Run the chapter's process, narrating each start, each line, each kill. */
  run(options: DemoRun): Promise<RunResult>;
  /** Print the ledger for these orders; true when every effect happened exactly once. */
  ledger(orders: string[]): Promise<boolean>;
}

/**
 * Something run beside a demo, on its database, from the moment the database
 * exists until the demo ends: `npm run chapter 9 -- --inspect` puts the web
 * inspector here (tools/bin/chapter.ts). shared/ imports nothing from tools/;
 * a tool comes in through this.
 */
export interface DemoCompanion {
  /** Called once the demo's database exists (the chapter's processes migrate it), before the story. */
  start(demo: { chapter: Chapter; databaseUrl: string; databaseName: string }): Promise<{
    /** After the story, if it ran to its end (e.g. keep a page open until the learner is done). */
    afterStory?(): Promise<void>;
    stop(): Promise<void>;
  }>;
}

let companion: DemoCompanion | undefined;

/** Run `next` beside the demo that runs next in this process. */
export function besideTheDemo(next: DemoCompanion): void {
  companion = next;
}

/** Run a chapter's demo from start to finish, cleaning up even on Ctrl-C. */
export function demo(chapterNumber: number, story: (kit: DemoKit) => Promise<void>): void {
  runMain(async () => {
    const chapter = findChapter(chapterNumber);
    say.title(`Chapter ${chapter.number}: ${chapter.slug.slice(3).replace(/-/g, ' ')}`);
    const server = await startPostgres({ purpose: 'dev', log: (line) => say.explain(line) });
    say.explain(`database: ${server.describe}`);
    const databaseName = `chapter_${chapter.number}_demo`;
    const databaseUrl = await recreateDatabase(server.url, databaseName);
    const world = await startWorld({ databaseUrl });
    // Processes are numbered across the whole demo, not per run() call.
    const processCount = { value: 0 };
    let beside: Awaited<ReturnType<DemoCompanion['start']>> | undefined;
    const cleanUp = async () => {
      await beside?.stop();
      await world.stop();
      await server.stop();
    };
    // Ctrl-C: stop the world and the database, then exit — quietly, even
    // though the story, cut off mid-way, will now fail on the stopped world.
    let interrupted: Promise<void> | undefined;
    const onSignal = () => {
      say.line(paint.dim('\nInterrupted: stopping the world and the database…'));
      interrupted ??= cleanUp().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      beside = await companion?.start({ chapter, databaseUrl, databaseName });
      await story({
        chapter,
        server,
        world,
        databaseName,
        run: (options) => narratedRun(chapter, world, options, processCount),
        ledger: async (orders) => {
          const ledger: Ledger = await world.ledger();
          say.line(`\n${paint.bold('The ledger')} ${paint.dim('(counted by the payment provider, the mailbox and the stock table)')}`);
          say.line(ledgerTable(ledger, orders));
          return orders.every((id) => exactlyOnce(ledger.byOrder(id)));
        },
      });
      say.line(paint.dim(`\nThe tables are still there: npm run db -- psql ${databaseName}`));
      await beside?.afterStory?.();
    } catch (thrown) {
      if (interrupted) return interrupted; // exits 130 once clean
      throw thrown;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (!interrupted) await cleanUp();
    }
  });
}

async function narratedRun(chapter: Chapter, world: World, options: DemoRun, count: { value: number }): Promise<RunResult> {
  const args = options.args ?? ['start', ...options.orders];
  return runUntilDone({
    script: chapter.main,
    args,
    restartArgs: options.restartArgs,
    env: { ...world.env, FORCE_COLOR: paint.bold('x') === 'x' ? '0' : '1', ...options.env },
    faults: options.faults,
    maxAttempts: options.maxAttempts,
    timeoutMs: 60_000,
    onStart: (number, fault) => {
      const command = number === 1 ? args : (options.restartArgs ?? args);
      const armed = typeof fault === 'string' ? paint.yellow(` (armed: crash at ${fault})`) : '';
      count.value++;
      say.process(count.value, `main.ts ${command.join(' ')}${armed}`);
    },
    onLine: (line) => {
      if (line.trim() && !line.startsWith('[crash-point]')) say.line(`${paint.blue('│')} ${line}`);
    },
    onAttempt: (attempt) => {
      if (attempt.crashedAt) say.crash(attempt.crashedAt);
      else if (attempt.signal) say.line(paint.red(`└ 💥 killed with ${attempt.signal}`));
      else say.exited(attempt.exitCode);
    },
  });
}
