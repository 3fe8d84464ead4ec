/**
 * `npm run matrix` — every crash scenario against every chapter's engine:
 * the course's progress at a glance.
 *
 *   npm run matrix                       print the table
 *   npm run matrix -- --write            also update the table in README.md
 *   npm run matrix -- --chapters 2,3     only these chapters
 *   npm run matrix -- --scenarios a,b    only these scenarios (ids from shared/scenarios.ts)
 *   npm run matrix -- --json             machine-readable outcomes
 */
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot, startPostgres } from '../../shared/db/server.ts';
import { runMain } from '../../shared/errors.ts';
import { paint } from '../../shared/narrate.ts';
import { listChapters, runScenario, scenarios, VERDICT_LABEL, type Outcome } from '../../shared/scenarios.ts';

const START = '<!-- matrix:start -->';
const END = '<!-- matrix:end -->';

runMain(async () => {
  const argv = process.argv.slice(2);
  const only = argv.includes('--chapters') ? argv[argv.indexOf('--chapters') + 1]?.split(',').map(Number) : undefined;
  const chapters = listChapters().filter((c) => !only || only.includes(c.number));
  const onlyScenarios = argv.includes('--scenarios') ? argv[argv.indexOf('--scenarios') + 1]?.split(',') : undefined;
  const chosen = scenarios.filter((s) => !onlyScenarios || onlyScenarios.includes(s.id));
  const server = await startPostgres({ purpose: 'test', log: (line) => console.error(paint.dim(line)) });
  const outcomes = new Map<string, Outcome>();
  try {
    const jobs = chosen.flatMap((s) => chapters.map((c) => ({ s, c })));
    let done = 0;
    // Two at a time: the machine has two cores, and each job starts several processes.
    const queue = [...jobs];
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        const outcome = await runScenario(job.c.slug, job.s.id, { adminUrl: server.url });
        outcomes.set(`${job.s.id}/${job.c.slug}`, outcome);
        done++;
        process.stderr.write(paint.dim(`\r  ${done}/${jobs.length} scenario runs`));
      }
    };
    await Promise.all([worker(), worker()]);
    process.stderr.write('\n');
  } finally {
    await server.stop();
  }

  if (argv.includes('--json')) {
    console.log(JSON.stringify([...outcomes.values()].map(({ runs: _runs, ledger: _ledger, ...o }) => o), null, 2));
    return;
  }

  const header = `| scenario | ${chapters.map((c) => `${String(c.number).padStart(2, '0')} ${c.slug.slice(3)}`).join(' | ')} |`;
  const rule = `|---|${chapters.map(() => '---').join('|')}|`;
  const rows = chosen.map(
    (s) => `| ${s.title} | ${chapters.map((c) => VERDICT_LABEL[outcomes.get(`${s.id}/${c.slug}`)!.verdict]).join(' | ')} |`,
  );
  const table = [header, rule, ...rows].join('\n');
  console.log(`\n${colour(table)}\n`);
  console.log(paint.dim('✓ exactly once: one charge, one stock decrement, one email per order  ·  – the scenario does not apply'));

  if (argv.includes('--write')) {
    const readme = path.join(projectRoot, 'README.md');
    const text = fs.readFileSync(readme, 'utf8');
    if (!text.includes(START) || !text.includes(END)) throw new Error(`README.md has no ${START} … ${END} section`);
    const updated = text.replace(new RegExp(`${START}[\\s\\S]*?${END}`), `${START}\n${table}\n${END}`);
    fs.writeFileSync(readme, updated);
    console.log('README.md updated.');
  }
});

function colour(table: string): string {
  return table.replace(/✓ [a-z ]+/g, (m) => paint.green(m)).replace(/✗ [a-z ]+/g, (m) => paint.red(m));
}
