/**
 * `npm run chapter 2` — the JSON file log, told as three crashes:
 *
 *   1. killed right after the charge is recorded → the restart replays the
 *      charge from the file: charged once ✓ (chapter 1 charged twice here)
 *   2. killed after the charge, before its record → the file never heard of
 *      it: charged twice ✗ (chapters 4 and 5 close that gap)
 *   3. the naive writer (LOG_WRITER=naive), killed half-way through writing
 *      → a torn log, and a process that refuses to start
 */
import fs from 'node:fs';
import path from 'node:path';
import { demo } from '../../shared/demo.ts';
import { paint, say } from '../../shared/narrate.ts';

/** Print the log file as it is on disk (with `tail`, only its last lines: where a torn file ends). */
function showLog(file: string, { tail }: { tail?: number } = {}): void {
  if (!fs.existsSync(file)) {
    say.line(paint.dim('  (no log file)'));
    return;
  }
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.replace(/\n$/, '').split('\n');
  const shown = tail && lines.length > tail ? lines.slice(-tail) : lines;
  say.line(paint.dim(`  ${path.basename(file)} (${Buffer.byteLength(text)} bytes)${shown.length < lines.length ? `, its last ${shown.length} lines` : ''}:`));
  if (shown.length < lines.length) say.line(`  ${paint.yellow('┆')} …`);
  for (const line of shown) say.line(`  ${paint.yellow('┆')} ${line}`);
}

demo(2, async ({ world, run, ledger }) => {
  const logFile = path.join(world.dir, 'workflow-log.json');

  say.explain(
    'In chapter 1 the log was a Map in the process’s memory. A crash took the Map along, so\n' +
      'even a crash *after* the charge was recorded charged the card again on restart.\n' +
      `Now the log is a file, ${path.basename(logFile)}, rewritten after every step: write a temp\n` +
      'file, fsync it, rename it over the log, fsync the directory. A crash leaves the old log or\n' +
      'the new one — never half of one.',
  );

  // ── 1. The crash chapter 1 could not survive ──────────────────────────────
  say.title('1. Crash right after the charge is recorded');
  say.explain('We start order-1 and kill the process (SIGKILL) the moment charge_card is on disk.');
  await run({ orders: ['order-1'], faults: ['after-record:charge_card'], maxAttempts: 1 });
  say.explain('\nThe process is gone. Its log is not — this is the file it left behind:');
  showLog(logFile);
  say.explain('\nWe start the same command again, in a new process. It reads the file, so charge_card\ncomes from the log (↺ replayed) and only the steps after it run:');
  await run({ orders: ['order-1'] });
  const once = await ledger(['order-1']);
  say.verdict(once, once ? 'order-1 was charged once: the record survived the crash.' : 'order-1 was not exactly once — that should not happen here.');

  // ── 2. What a file cannot fix ─────────────────────────────────────────────
  say.title('2. Crash after the charge, before its record');
  say.explain('Now order-2, killed a moment earlier: the card is charged, the file not yet rewritten.');
  await run({ orders: ['order-2'], faults: ['after-effect:charge_card'] });
  const twice = await ledger(['order-2']);
  say.verdict(
    twice,
    twice
      ? 'order-2 was charged once — that should not happen in this chapter.'
      : 'order-2 was charged twice: the charge and its record are two separate acts, and we died between them.',
  );
  say.explain(
    'No file format closes that gap. The payment happens in one place and its record in another;\n' +
      'a crash can always land between the two. Chapter 3 moves the log into PostgreSQL, so many\n' +
      'processes can share it; chapters 4 and 5 close this gap for database writes and for payments.',
  );

  // ── 3. Why the writer has to be atomic ────────────────────────────────────
  say.title('3. The naive writer tears the log');
  say.explain(
    'Most programs save a file with fs.writeFile: truncate it, write the new text in place.\n' +
      'With LOG_WRITER=naive this chapter does that too. We kill order-3 half-way through writing:',
  );
  await run({ orders: ['order-3'], faults: ['during-record:charge_card'], env: { LOG_WRITER: 'naive' } });
  say.explain('\nWhat is on disk now is half of the new log and none of the old one:');
  showLog(logFile, { tail: 5 });
  say.line(paint.red('  ↑ the file ends there, in the middle of a value'));
  say.explain(
    '\nThe restart refused to run. Starting with an empty log instead would have forgotten that\n' +
      'order-1 and order-2 are finished — and charged them all again. A torn log loses everything,\n' +
      'not just the last step; that is why the real writer goes through a temp file and a rename.',
  );
  await ledger(['order-1', 'order-2', 'order-3']);
});
