/**
 * Each chapter's engine behind one small interface, so the benchmark can run
 * the same workflow — three steps that do nothing — on all of them and show
 * what each chapter's durability costs.
 *
 * The engines' APIs differ from chapter to chapter (that is the course), so
 * each gets a few lines of adapter here. Loaded lazily: a chapter that does
 * not exist yet is simply skipped.
 *
 * Chapters 6 and 7 are not here: their rows in the per-chapter table are the
 * sequential suite's (production.ts, run on both) — the same workflow, run the
 * same way, one after another — rather than a second, noisier measurement.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { projectRoot } from '../../shared/db/server.ts';

/** An open engine: run one 3-step no-op workflow to completion under `id`. */
export interface BenchEngine {
  run(id: string): Promise<void>;
  close(): Promise<void>;
}

export interface EngineEntry {
  chapter: number;
  label: string;
  /** What "recorded" means in this chapter. */
  durability: string;
  open(env: { databaseUrl: string; dir: string }): Promise<BenchEngine>;
}

// Loosely typed on purpose: each chapter's Context differs a little.
type AnyCtx = { step: (name: string, fn: (...args: unknown[]) => Promise<unknown>) => Promise<unknown> };
const noop = async (ctx: AnyCtx) => {
  await ctx.step('a', async () => 1);
  await ctx.step('b', async () => 2);
  await ctx.step('c', async () => 3);
  return 'done';
};

async function load<T>(relative: string): Promise<T> {
  return (await import(pathToFileURL(path.join(projectRoot, relative)).href)) as T;
}

function exists(relative: string): boolean {
  return fs.existsSync(path.join(projectRoot, relative));
}

/**
 * Chapters 3–5 share an API: createEngine({ db, workflows }) and start — as
 * start(name, id, input) in 3 and 4, start(name, input, { id }) from 5 on.
 */
function postgresLogEngine(chapter: number, slug: string, durability: string): EngineEntry {
  return {
    chapter,
    label: slug,
    durability,
    async open({ databaseUrl }) {
      const { createEngine } = await load<{ createEngine: (o: unknown) => { start: (...args: unknown[]) => Promise<unknown> } }>(
        `chapters/${slug}/engine.ts`,
      );
      const { createSchema } = await load<{ createSchema: (db: pg.Pool) => Promise<void> }>(`chapters/${slug}/queries.ts`);
      const db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
      await createSchema(db);
      const engine = createEngine({ db, workflows: { noop } });
      const start = chapter >= 5 ? (id: string) => engine.start('noop', {}, { id }) : (id: string) => engine.start('noop', id, {});
      return { run: async (id) => void (await start(id)), close: () => db.end() };
    },
  };
}

export function chapterEngines(): EngineEntry[] {
  const entries: EngineEntry[] = [];
  if (exists('chapters/01-dict-log/engine.ts')) {
    entries.push({
      chapter: 1,
      label: '01-dict-log',
      durability: 'a Map in memory (not durable)',
      async open() {
        const { runWorkflow } = await load<{ runWorkflow: (id: string, wf: unknown, input: unknown) => Promise<unknown> }>('chapters/01-dict-log/engine.ts');
        return { run: async (id) => void (await runWorkflow(id, noop, {})), close: async () => {} };
      },
    });
  }
  if (exists('chapters/02-json-file-log/engine.ts')) {
    entries.push({
      chapter: 2,
      label: '02-json-file-log',
      durability: 'whole file rewritten + fsync + rename + fsync dir',
      async open({ dir }) {
        const mod = await load<{
          openLog: (file: string) => Promise<unknown>;
          runWorkflow: (log: unknown, id: string, wf: unknown, input: unknown) => Promise<unknown>;
        }>('chapters/02-json-file-log/engine.ts');
        const log = await mod.openLog(path.join(dir, 'bench-log.json'));
        return { run: async (id) => void (await mod.runWorkflow(log, id, noop, {})), close: async () => {} };
      },
    });
  }
  if (exists('chapters/03-postgres-log/engine.ts')) entries.push(postgresLogEngine(3, '03-postgres-log', 'a committed INSERT per step'));
  if (exists('chapters/04-transactions/engine.ts')) entries.push(postgresLogEngine(4, '04-transactions', 'a committed INSERT per step'));
  if (exists('chapters/05-idempotency-keys/engine.ts')) entries.push(postgresLogEngine(5, '05-idempotency-keys', 'a committed INSERT per step'));
  return entries;
}
