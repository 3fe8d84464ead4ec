/**
 * `npm run torture` — randomized faults against the last chapter's engine
 * (chapter 9: its orders wait for events, some are cancelled, some are
 * batches of child orders), and an invariant checker over what the world saw.
 *
 *   npm run torture -- --runs 3 --seed 42        3 rounds, seeds 42, 43, 44
 *   npm run torture -- --runs 26 --seed 1 --faults 40 --write   the long run (1,040 faults); writes the summary
 *                                                into docs/torture/report.md, above its history
 *
 * Options: --orders N (per round, default 40), --workers N (3), --faults N
 * (per round, 20), --lease MS (1000), --cooling-off MS (the order's sleep
 * before its email, 400). The seed fixes each round's fault schedule (not
 * every timing: the processes race as they do); on a violation the seed and
 * the fault trace are printed, and saved under .course-data/torture/.
 *
 * kill-postgres needs a server this process started (the embedded one); with
 * DATABASE_URL, or an embedded server another course process owns, it is
 * skipped and the report says so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot, startPostgres } from '../../shared/db/server.ts';
import { CourseError, runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { ENGINE, FAULT_KINDS, runRound, type FaultKind, type RoundResult } from '../torture/round.ts';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '1' },
      seed: { type: 'string' },
      orders: { type: 'string', default: '40' },
      workers: { type: 'string', default: '3' },
      faults: { type: 'string', default: '20' },
      lease: { type: 'string', default: '1000' },
      'cooling-off': { type: 'string', default: '400' },
      write: { type: 'boolean', default: false },
    },
  });
  const number = (name: keyof typeof values, min: number) => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < min) throw new CourseError(`--${name} ${values[name]}: expected a whole number ≥ ${min}`);
    return n;
  };
  const runs = number('runs', 1);
  const seed = values.seed === undefined ? Date.now() % 100_000 : number('seed', 0);
  const options = { orders: number('orders', 1), workers: number('workers', 1), faults: number('faults', 0), leaseMs: number('lease', 200), coolingOffMs: number('cooling-off', 0) };

  const server = await startPostgres({ purpose: 'test', log: (line) => console.error(paint.dim(line)) });
  const results: RoundResult[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      console.log(paint.bold(`\nround ${i + 1}/${runs} — seed ${seed + i}: ${options.orders} orders, ${options.workers} workers, ${options.faults} faults`));
      const result = await runRound({ ...options, seed: seed + i, adminUrl: server.url, server, log: (line) => console.log(paint.dim(line)) });
      results.push(result);
      for (const inv of result.invariants) {
        console.log(`  ${inv.ok ? paint.green('✓') : paint.red('✗')} ${inv.name}${inv.ok ? '' : `\n      ${inv.violations.join('\n      ')}`}`);
      }
      console.log(paint.dim(`  observed: ${describeObserved(result.observed)}`));
      for (const story of result.observed.failedOrders) console.log(paint.dim(`    failed, every claim ended by a fault: ${story}`));
      if (result.unexpectedExits.length) console.log(paint.red(`  ✗ workers exited on their own:\n      ${result.unexpectedExits.join('\n      ')}`));
      if (!passed(result)) saveTrace(result);
    }
  } finally {
    await server.stop();
  }

  const summary = summarize(results, { ...options, seed, runs, server: server.describe });
  console.log(`\n${summary}`);
  if (values.write) {
    const out = path.join(projectRoot, 'docs', 'torture');
    fs.mkdirSync(out, { recursive: true });
    // The summary replaces the report's top; its history (from HISTORY on, written by people) stays.
    const file = path.join(out, 'report.md');
    const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const history = old.indexOf(HISTORY);
    fs.writeFileSync(file, `${summary}\n${history >= 0 ? `\n${old.slice(history)}` : ''}`);
    console.log(paint.dim('Wrote docs/torture/report.md (its history kept)'));
  }
  if (!results.every(passed)) process.exitCode = 1;
});

function passed(result: RoundResult): boolean {
  return result.invariants.every((i) => i.ok) && result.unexpectedExits.length === 0;
}

function saveTrace(result: RoundResult): void {
  const dir = path.join(projectRoot, '.course-data', 'torture');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `seed-${result.seed}.json`);
  fs.writeFileSync(file, JSON.stringify(result, null, 2));
  console.log(paint.red(`  violation — replay with --seed ${result.seed} --runs 1; trace saved to ${path.relative(projectRoot, file)}`));
}

/** Where the report's history begins: --write keeps everything from here on. */
const HISTORY = '## What the long runs found';

function describeObserved(o: RoundResult['observed']): string {
  const deaths = Object.entries(o.workerDeaths).map(([cause, n]) => `${n} ${cause}`).join(', ');
  return `${o.sleeps} sleeps and ${o.backoffs} back-offs checked, ${o.poisons} poison workflow(s), ${o.ordersFailed} order(s) failed after maxAttempts (explained); worker deaths: ${deaths}`;
}

function summarize(
  results: RoundResult[],
  o: { orders: number; workers: number; faults: number; leaseMs: number; coolingOffMs: number; seed: number; runs: number; server: string },
): string {
  const counts = new Map<FaultKind, number>(FAULT_KINDS.map((k) => [k, 0]));
  for (const r of results) for (const f of r.faults) counts.set(f.kind, (counts.get(f.kind) ?? 0) + 1);
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const names = results[0]?.invariants.map((i) => i.name) ?? [];
  const skipped = [...new Set(results.flatMap((r) => r.skipped))];
  const minutes = results.reduce((a, r) => a + r.durationMs, 0) / 60_000;
  const sum = (of: (r: RoundResult) => number) => results.reduce((a, r) => a + of(r), 0);
  const deaths = new Map<string, number>();
  for (const r of results) for (const [cause, n] of Object.entries(r.observed.workerDeaths)) deaths.set(cause, (deaths.get(cause) ?? 0) + n);
  const count = (which: (f: RoundResult['faults'][number]) => boolean) => sum((r) => r.faults.filter(which).length);
  const fallbacks = sum((r) => r.faults.filter((f) => f.detail.includes('nothing was waiting')).length);
  const noOutage = sum((r) => r.faults.filter((f) => f.kind === 'provider-outage' && f.detail.startsWith('(none')).length);
  return [
    `# Torture run`,
    '',
    `\`npm run torture -- --runs ${o.runs} --seed ${o.seed} --orders ${o.orders} --workers ${o.workers} --faults ${o.faults} --lease ${o.leaseMs} --cooling-off ${o.coolingOffMs}\``,
    `on ${o.server}, against \`${ENGINE}\`; ${results.length} round(s), ${results.length * o.orders} orders and ${sum((r) => r.observed.poisons)} poison workflows, ${total} faults, ${minutes.toFixed(1)} minutes.`,
    '',
    '| fault | count |',
    '|---|---|',
    ...[...counts].map(([kind, n]) => `| ${kind} | ${n} |`),
    `| **total** | **${total}** |`,
    '',
    ...(fallbacks ? [`${fallbacks} kill-waiting fault(s) came after every order had ended, with nothing left to wait: a worker killed at random instead, counted as kill-worker.`, ''] : []),
    ...(noOutage ? [`${noOutage} provider-outage fault(s) injected nothing: an order had already failed as many attempts of each step as an outage may leave it.`, ''] : []),
    '| what the round saw | count |',
    '|---|---|',
    `| provider outages followed by a SIGKILL of the worker that put a workflow to wait out its back-off | ${count((f) => f.kind === 'provider-outage' && f.detail.includes('; SIGKILL'))} |`,
    `| kill-waiting timed by the harness: during a sleep / during a back-off | ${count((f) => f.detail.includes('waits for its sleep'))} / ${count((f) => f.detail.includes('waits for its back-off'))} |`,
    `| kill-waiting armed instead (nothing waited for 1 s): the worker dies once it has put a workflow to sleep | ${count((f) => f.kind === 'kill-waiting' && f.detail.includes('armed'))} |`,
    `| sleeps checked (the entry after each, against its end) | ${sum((r) => r.observed.sleeps)} |`,
    `| back-offs checked (the next attempt, against its retry time) | ${sum((r) => r.observed.backoffs)} |`,
    ...[...deaths].map(([cause, n]) => `| worker processes SIGKILLed: ${cause} | ${n} |`),
    `| orders failed after maxAttempts, each claim ended by a fault | ${sum((r) => r.observed.ordersFailed)} |`,
    `| waits ended by their event / sends that found their order parked for it (the send recorded the wait’s end and woke it) | ${sum((r) => r.observed.eventWaits)} / ${sum((r) => r.observed.wokenBySend)} |`,
    `| orders cancelled by the round / completed by the run that held them before it heard of the cancel | ${sum((r) => r.observed.cancelled)} / ${sum((r) => r.observed.completedBeforeHearing)} |`,
    `| steps in flight at a cancel, recorded by the run that held them / compensations after a cancel (release_inventory) | ${sum((r) => r.observed.stepsInFlightAtCancel)} / ${sum((r) => r.observed.compensations)} |`,
    `| batches of child orders (their children checked like the other orders) / completed | ${sum((r) => r.observed.parents)} / ${sum((r) => r.observed.parentsCompleted)} |`,
    '',
    '| invariant | rounds where it held |',
    '|---|---|',
    ...names.map((name) => `| ${name} | ${results.filter((r) => r.invariants.find((i) => i.name === name)?.ok).length}/${results.length} |`),
    `| no worker exited on its own, nor died of a SIGKILL nobody sent (no crash loop) | ${results.filter((r) => r.unexpectedExits.length === 0).length}/${results.length} |`,
    '',
    ...(sum((r) => r.observed.failedOrders.length)
      ? [
          'Orders that failed after maxAttempts (each claim in a row: its owner, and the fault that ended it):',
          '',
          ...results.flatMap((r) => r.observed.failedOrders.map((story) => `- seed ${r.seed}: ${story}`)),
          '',
        ]
      : []),
    results.every(passed) ? '**0 violations.**' : `**Violations in rounds with seeds ${results.filter((r) => !passed(r)).map((r) => r.seed).join(', ')}.**`,
    ...(skipped.length ? ['', ...skipped.map((s) => `Skipped: ${s}.`)] : []),
  ].join('\n');
}
