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
 *
 * The suites that compare them (steps, sequential, throughput, dispatch) run
 * on both; the others (takeover, steady, history) on the last one.
 *
 * Only what the benchmark calls is typed here, so that a chapter's internals
 * can change freely; tsc checks below that both entries still fit.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { projectRoot } from '../../shared/db/server.ts';
import { CourseError } from '../../shared/errors.ts';
import type { BenchWorkflows } from './workflows.ts';

/** The engines compared, in chapter order; the last is the one the single-chapter suites measure. */
export const PRODUCTION_CHAPTERS = ['06-leasing-workers', '07-fast-path'] as const;
export const LAST_CHAPTER: string = PRODUCTION_CHAPTERS[PRODUCTION_CHAPTERS.length - 1]!;

/** What "recorded" means in each, for the per-chapter durability table. */
const DURABILITY: Record<string, string> = {
  '06-leasing-workers': 'BEGIN, a fenced INSERT, COMMIT per step (after a claim)',
  '07-fast-path': 'one fenced INSERT … SELECT per step (claimed in start()’s INSERT)',
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

// Both chapters' public entries must fit ProductionApi: `npx tsc --noEmit` fails here if one stops fitting.
type Fits<T extends ProductionApi> = T;
export type Chapter6Fits = Fits<typeof import('../../chapters/06-leasing-workers/index.ts')>;
export type Chapter7Fits = Fits<typeof import('../../chapters/07-fast-path/index.ts')>;

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
