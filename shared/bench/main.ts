/**
 * `npm run bench` — what durability costs, measured against yardsticks taken
 * in the same run on the same server.
 *
 *   npm run bench               the full run (a few minutes); writes docs/bench/report.md and results.json
 *   npm run bench -- --quick    tiny counts, no report files (what `npm test` runs so this cannot rot)
 *
 * A benchmark, never a timed test: nothing here passes or fails on speed.
 * Uses the embedded server by default, or DATABASE_URL.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createDatabase, dropDatabase } from '../db/databases.ts';
import { projectRoot, startPostgres } from '../db/server.ts';
import { runMain } from '../errors.ts';
import { paint } from '../narrate.ts';
import { flushRate, insertCommits, type CommitRate } from './baseline.ts';
import { chapterEngines } from './engines.ts';
import { Probe, type Delta } from './probes.ts';
import { fmt, msSince, summarize, type Summary } from './stats.ts';

interface ChapterCost {
  chapter: number;
  label: string;
  durability: string;
  workflows: number;
  workflowsPerSecond: number;
  latency: Summary;
  writeTransactionsPerWorkflow: number;
  walBytesPerWorkflow: number;
  nodeCpuSeconds: number;
  pgCpuSeconds: number | undefined;
}

export interface BenchResults {
  when: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; platform: string };
  server: { describe: string; version: string; fsync: string; synchronousCommit: string };
  quick: boolean;
  flush: { flushesPerSecond: number; latency: Summary };
  baseline: { oneClient: CommitRate; eightClients: CommitRate };
  chapters: ChapterCost[];
}

runMain(async () => {
  const quick = process.argv.includes('--quick');
  const write = !quick && !process.argv.includes('--no-write');
  // The engines' per-step trace lines would measure the terminal, not the engine.
  process.env.COURSE_TRACE = '0';

  const server = await startPostgres({ purpose: 'test', log: (line) => console.error(paint.dim(line)) });
  const databaseUrl = await createDatabase(server.url, 'bench');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'course-bench-'));
  const probe = await Probe.open(databaseUrl, server.embedded?.pid);
  const section = (title: string) => console.error(paint.bold(`\n▸ ${title}`));
  try {
    const settings = await probe.query<{ version: string; fsync: string; sc: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sc`,
    );
    const row = settings.rows[0]!;

    section('disk flush rate (fdatasync of 8 KiB)');
    const flushDir = server.embedded ? path.dirname(server.embedded.dataDir) : os.tmpdir();
    const flush = flushRate(flushDir, quick ? 20 : 500);

    section('baseline: single-row INSERT autocommit');
    const oneClient = await insertCommits(databaseUrl, 1, quick ? 50 : 3000);
    const eightClients = await insertCommits(databaseUrl, 8, quick ? 80 : 12000);

    section('what durability costs, per chapter (3 no-op steps, one workflow after another)');
    const chapters: ChapterCost[] = [];
    for (const entry of chapterEngines()) {
      const count = quick ? 10 : entry.chapter === 1 ? 5000 : entry.chapter === 2 ? 300 : 1000;
      const dbUrl = await createDatabase(server.url, `bench_ch${entry.chapter}`);
      const dir = fs.mkdtempSync(path.join(scratch, `ch${entry.chapter}-`));
      const engine = await entry.open({ databaseUrl: dbUrl, dir });
      // Warm up (JIT, prepared plans, connections) outside the measurement.
      for (let i = 0; i < Math.min(20, count); i++) await engine.run(`warm-${i}`);
      const latencies: number[] = [];
      const before = await probe.snapshot();
      const loopStart = process.hrtime.bigint();
      for (let i = 0; i < count; i++) {
        const t = process.hrtime.bigint();
        await engine.run(`wf-${i}`);
        latencies.push(msSince(t));
      }
      const loopSeconds = msSince(loopStart) / 1000;
      const after = await probe.snapshot();
      await engine.close();
      await dropDatabase(dbUrl, server.url).catch(() => {});
      const d: Delta = Probe.delta(before, after);
      chapters.push({
        chapter: entry.chapter,
        label: entry.label,
        durability: entry.durability,
        workflows: count,
        workflowsPerSecond: count / loopSeconds,
        latency: summarize(latencies),
        writeTransactionsPerWorkflow: d.writeTransactions / count,
        walBytesPerWorkflow: d.walBytes / count,
        nodeCpuSeconds: d.nodeCpuSeconds,
        pgCpuSeconds: d.pgCpuSeconds,
      });
      console.error(paint.dim(`  ${entry.label}: ${fmt(count / loopSeconds, 0)} workflows/s`));
    }

    const results: BenchResults = {
      when: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
      },
      server: { describe: server.describe, version: row.version, fsync: row.fsync, synchronousCommit: row.sc },
      quick,
      flush,
      baseline: { oneClient, eightClients },
      chapters,
    };

    const report = renderReport(results);
    console.log(`\n${report}`);
    if (write) {
      const out = path.join(projectRoot, 'docs', 'bench');
      fs.mkdirSync(out, { recursive: true });
      fs.writeFileSync(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
      fs.writeFileSync(path.join(out, 'report.md'), `${report}\n`);
      console.error(paint.dim(`\nWrote docs/bench/report.md and docs/bench/results.json`));
    }
  } finally {
    await probe.close();
    await dropDatabase(databaseUrl, server.url).catch(() => {});
    fs.rmSync(scratch, { recursive: true, force: true });
    await server.stop();
  }
});

/** The results as a markdown report (also what the terminal shows). */
export function renderReport(r: BenchResults): string {
  const base = r.baseline.oneClient.latency.meanMs;
  const lines = [
    `# Benchmark report`,
    '',
    `Measured ${r.when.slice(0, 16).replace('T', ' ')} UTC on ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}; ` +
      `PostgreSQL ${r.server.version} (${r.server.describe}), fsync=${r.server.fsync}, synchronous_commit=${r.server.synchronousCommit}.` +
      (r.quick ? ' **Quick run: tiny counts, figures are not meaningful.**' : ''),
    '',
    `Reproduce: \`npm run bench\` (embedded server) or \`DATABASE_URL=… npm run bench\`.`,
    '',
    '## Yardsticks (same run, same server)',
    '',
    '| measure | rate | mean | p50 | p99 |',
    '|---|---|---|---|---|',
    `| disk flush (fdatasync 8 KiB) | ${fmt(r.flush.flushesPerSecond, 0)}/s | ${fmt(r.flush.latency.meanMs)} ms | ${fmt(r.flush.latency.p50Ms)} ms | ${fmt(r.flush.latency.p99Ms)} ms |`,
    `| INSERT autocommit, 1 client | ${fmt(r.baseline.oneClient.commitsPerSecond, 0)} commits/s | ${fmt(base)} ms | ${fmt(r.baseline.oneClient.latency.p50Ms)} ms | ${fmt(r.baseline.oneClient.latency.p99Ms)} ms |`,
    `| INSERT autocommit, 8 clients | ${fmt(r.baseline.eightClients.commitsPerSecond, 0)} commits/s | ${fmt(r.baseline.eightClients.latency.meanMs)} ms | ${fmt(r.baseline.eightClients.latency.p50Ms)} ms | ${fmt(r.baseline.eightClients.latency.p99Ms)} ms |`,
    '',
    '## What durability costs, per chapter',
    '',
    'The same workflow — three steps that do nothing — run one after another on each chapter’s engine.',
    '"× commit" is the workflow’s mean latency divided by one baseline commit (1 client).',
    '',
    '| chapter | "recorded" means | workflows/s | mean | p99 | × commit | write txns / wf | WAL bytes / wf | CPU node / pg (s) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.chapters.map(
      (c) =>
        `| ${c.label} | ${c.durability} | ${fmt(c.workflowsPerSecond, 0)} | ${fmt(c.latency.meanMs)} ms | ${fmt(c.latency.p99Ms)} ms | ${fmt(c.latency.meanMs / base, 1)}× | ${fmt(c.writeTransactionsPerWorkflow, 1)} | ${fmt(c.walBytesPerWorkflow, 0)} | ${fmt(c.nodeCpuSeconds)} / ${c.pgCpuSeconds === undefined ? 'n/a' : fmt(c.pgCpuSeconds)} |`,
    ),
  ];
  return lines.join('\n');
}
