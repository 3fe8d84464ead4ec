/**
 * The production chapters the benchmark measures side by side, each loaded by
 * its directory through its public entry (`chapters/<dir>/index.ts`):
 *
 *   06-leasing-workers  leasing workers with plain statements: BEGIN, a fenced
 *                       INSERT, COMMIT per step record; one claim per
 *                       workflow; a NOTIFY per start; a renewal per lease
 *   07-fast-path        the same engine made fast: one-statement fenced
 *                       records, prepared statements, start() claiming for a
 *                       local worker in its INSERT, NOTIFY coalescing,
 *                       write-combining, claims of two or more
 *   08-failures-and-time chapter 7's engine with attempts counted by the
 *                       claim, step retries and durable sleep waiting in the
 *                       database (lease_expires_at set ahead, nobody holding
 *                       it), deadlines, schedules — the fast path kept
 *   09-waiting-for-the-world chapter 8's engine with events (ctx.waitForEvent
 *                       parks the workflow, engine.send wakes it) and
 *                       cancellation — the same path for a workflow that
 *                       does not wait
 *
 * The suites that compare them (steps, sequential, throughput, dispatch) run
 * on all four — chapters 6 and 7, the references (what the fast path buys,
 * and the fast path before failures and time), on fewer throughput levels and
 * without the polling-only dispatch run (REFERENCE_CHAPTERS); the others
 * (takeover, steady, history) on the last one, and so do the suites of
 * durable sleep (wakeup, sleeping), on a chapter that has it (timeApi), and
 * of events (events, waiting: events.ts), on a chapter that has them.
 *
 * Only what the benchmark calls is typed here, so that a chapter's internals
 * can change freely; tsc checks below that every entry still fits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { projectRoot } from '../../shared/db/server.ts';
import { CourseError } from '../../shared/errors.ts';
import type { BenchWorkflows, NapInput, TimeWorkflows } from './workflows.ts';

/** The engines compared, in chapter order; the last is the one the single-chapter suites measure. */
export const PRODUCTION_CHAPTERS = ['06-leasing-workers', '07-fast-path', '08-failures-and-time', '09-waiting-for-the-world'] as const;
export const LAST_CHAPTER: string = PRODUCTION_CHAPTERS[PRODUCTION_CHAPTERS.length - 1]!;
/**
 * Compared for what the chapter after them buys, not in every detail: the
 * throughput suite drains them at the two ends only (one worker × 1 and × 8,
 * 8 processes × 1: the figures "what chapter 7 buys" and "did chapter 8 keep
 * chapter 7's figures" quote), and dispatch skips their polling-only run
 * (polling is the same in every chapter). It keeps four chapters side by side
 * inside the run's time budget; the last two are measured in full.
 */
export const REFERENCE_CHAPTERS: readonly string[] = ['06-leasing-workers', '07-fast-path'];
/** The first chapter whose workflows can sleep durably (ctx.sleep): the wakeup and sleeping suites need it. */
export const FIRST_TIME_CHAPTER = 8;

/** What "recorded" means in each, for the per-chapter durability table. */
const DURABILITY: Record<string, string> = {
  '06-leasing-workers': 'BEGIN, a fenced INSERT, COMMIT per step (after a claim)',
  '07-fast-path': 'one fenced INSERT … SELECT per step (claimed in start()’s INSERT)',
  '08-failures-and-time': 'as chapter 7: one fenced INSERT … SELECT per step (claimed in start()’s INSERT)',
  '09-waiting-for-the-world': 'as chapters 7 and 8: one fenced INSERT … SELECT per step (claimed in start()’s INSERT)',
};

export interface BenchRun {
  id: string;
  result(): Promise<unknown>;
}

export interface BenchWorker {
  start(): Promise<void>;
  stop(options?: { graceMs?: number }): Promise<void>;
  drain(): Promise<void>;
}

export interface BenchWorkerOptions {
  concurrency?: number;
  leaseMs?: number;
  pollMs?: number;
  listen?: boolean;
  name?: string;
  onRunEnd?: (event: { workflowId: string; outcome: string }) => void;
  /** Chapter 7 on: delete finished workflows past an age (the steady-state run turns it on). */
  retention?: { olderThanMs: number; everyMs?: number; batch?: number };
}

export interface ProductionEngine {
  start(name: keyof BenchWorkflows & string, input: Record<string, never>, options: { id: string }): Promise<BenchRun>;
  inspect(id: string): Promise<{ leaseOwner: string | null } | undefined>;
  createWorker(options?: BenchWorkerOptions): BenchWorker;
}

/** The part of a production chapter's index.ts the benchmark uses. */
export interface ProductionApi {
  migrate(db: pg.Pool): Promise<unknown>;
  createEngine(options: { db: pg.Pool; workflows: BenchWorkflows; resultPollMs?: number }): ProductionEngine;
}

/** A worker of a chapter with durable sleep: it says what it holds (a sleeping workflow must not be there). */
export interface TimeWorker extends BenchWorker {
  readonly held: string[];
}

/** What the wakeup and sleeping suites use of a chapter with durable sleep: the same engine, with workflows that sleep. */
export interface TimeEngine {
  start(name: keyof TimeWorkflows & string, input: NapInput | Record<string, never>, options: { id: string }): Promise<BenchRun>;
  createWorker(options?: BenchWorkerOptions): TimeWorker;
}

/** The part of a chapter with durable sleep (8 on) that the wakeup and sleeping suites use. */
export interface TimeApi {
  migrate(db: pg.Pool): Promise<unknown>;
  createEngine(options: { db: pg.Pool; workflows: TimeWorkflows; resultPollMs?: number }): TimeEngine;
}

// Every chapter's public entry must fit ProductionApi: `npx tsc --noEmit` fails here if one stops fitting.
type Fits<T extends ProductionApi> = T;
export type Chapter6Fits = Fits<typeof import('../../chapters/06-leasing-workers/index.ts')>;
export type Chapter7Fits = Fits<typeof import('../../chapters/07-fast-path/index.ts')>;
export type Chapter8Fits = Fits<typeof import('../../chapters/08-failures-and-time/index.ts')>;
export type Chapter9Fits = Fits<typeof import('../../chapters/09-waiting-for-the-world/index.ts')>;
// …and a chapter with durable sleep, TimeApi too (its workflows call ctx.sleep, which chapters 6 and 7 do not have).
type TimeFits<T extends TimeApi> = T;
export type Chapter8TimeFits = TimeFits<typeof import('../../chapters/08-failures-and-time/index.ts')>;
export type Chapter9TimeFits = TimeFits<typeof import('../../chapters/09-waiting-for-the-world/index.ts')>;
// (A chapter with events, 9 on, must fit EventApi too: events.ts checks it.)

/** A production chapter, loaded. */
export interface ProductionChapter {
  /** Its directory under chapters/, e.g. '07-fast-path'. */
  dir: string;
  /** 7 for '07-fast-path'. */
  number: number;
  /** 'chapter 7'. */
  name: string;
  durability: string;
  api: ProductionApi;
}

/** The chapter's engine with durable sleep, or undefined for a chapter before it (FIRST_TIME_CHAPTER). */
export function timeApi(chapter: ProductionChapter): TimeApi | undefined {
  return chapter.number >= FIRST_TIME_CHAPTER ? (chapter.api as unknown as TimeApi) : undefined;
}

export function chapterNumber(dir: string): number {
  return Number.parseInt(dir, 10);
}

/** Load `chapters/<dir>/index.ts` (a directory name, or a path ending in one). */
export async function loadProductionChapter(dirOrPath: string = LAST_CHAPTER): Promise<ProductionChapter> {
  const dir = path.basename(path.resolve(projectRoot, 'chapters', dirOrPath));
  const entry = path.join(projectRoot, 'chapters', dir, 'index.ts');
  if (!fs.existsSync(entry) || Number.isNaN(chapterNumber(dir))) {
    throw new CourseError(`no production chapter at chapters/${dir}/index.ts`, `Chapters the benchmark knows: ${PRODUCTION_CHAPTERS.join(', ')}.`);
  }
  const api = (await import(pathToFileURL(entry).href)) as ProductionApi;
  return { dir, number: chapterNumber(dir), name: `chapter ${chapterNumber(dir)}`, durability: DURABILITY[dir] ?? 'see the chapter', api };
}
