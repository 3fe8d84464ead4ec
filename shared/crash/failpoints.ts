/**
 * Crash points: named places where the engine can be made to die for real.
 *
 * The engine calls `crashPoint('after-effect:charge_card')` at each durability
 * point. Normally that does nothing. When a run arms it through the
 * environment, the process SIGKILLs itself right there: no `finally` block
 * runs, no buffer is flushed, no exit handler fires — exactly like a power cut
 * or an OOM kill at that instruction. (The idea is etcd's gofail and TiKV's
 * fail-rs.) Throwing an exception is NOT a crash: `finally` blocks and
 * `catch`es would run, and a crash gives the program no such chance.
 *
 *   CRASH_AT=after-effect:charge_card      die the first time we get there
 *   CRASH_AT=after-record:charge_card@2    die the second time
 *   CRASH_RANDOM=seed=7,p=0.05,match=after-  die at each matching point with
 *                                          probability 5 %, drawn from a seeded
 *                                          generator so the run can be replayed
 *   PAUSE_AT=after-effect:reserve_inventory  freeze here (SIGSTOP ourselves) until
 *                                          the test sends SIGCONT: a process caught
 *                                          mid-step, for races and zombie tests
 *
 * Names used by the chapters (`<step>` is a step name, or `complete`):
 *   before-step:<step>     about to run the step's code
 *   after-effect:<step>    the step's effect happened, its record not yet written
 *   during-record:<step>   the record is half-written (file) or not yet committed (SQL);
 *                          chapter 7 has it for transaction steps only (its other
 *                          records are one statement: committed, or never written)
 *   after-record:<step>    the record is durable
 */
import fs from 'node:fs';

/** The line a crashing process writes to stderr, so the runner can tell which point killed it. */
export const CRASH_MARKER = '[crash-point] ';
/** The line a pausing process writes to stderr just before it stops itself. */
export const PAUSE_MARKER = '[pause-point] ';

interface Armed {
  name: string;
  hit: number;
}

interface RandomMode {
  seed: number;
  probability: number;
  match: string;
  next: () => number;
}

let configured = false;
let armed: Armed | undefined;
let pause: Armed | undefined;
let random: RandomMode | undefined;
const hits = new Map<string, number>();

/** Die here, for real, if this run armed `name`. */
export function crashPoint(name: string): void {
  if (!configured) configure();
  const count = (hits.get(name) ?? 0) + 1;
  hits.set(name, count);
  if (armed && armed.name === name && armed.hit === count) die(name, count);
  if (pause && pause.name === name && pause.hit === count) {
    fs.writeSync(2, `\n${PAUSE_MARKER}${name}@${count}\n`);
    process.kill(process.pid, 'SIGSTOP'); // resumes here on SIGCONT
  }
  if (random && name.startsWith(random.match) && random.next() < random.probability) die(name, count);
}

/** The names and hit counts seen so far in this process (for tests of the engine's crash points). */
export function crashPointHits(): ReadonlyMap<string, number> {
  return hits;
}

function die(name: string, count: number): never {
  // A synchronous write to stderr (a pipe or terminal, not the engine's
  // storage) so the parent knows where we died. Then SIGKILL ourselves.
  fs.writeSync(2, `\n${CRASH_MARKER}${name}@${count}\n`);
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is not deliverable late, but keep TypeScript (and paranoia) happy.
  for (;;) {}
}

function configure(): void {
  configured = true;
  armed = parsePoint(process.env.CRASH_AT);
  pause = parsePoint(process.env.PAUSE_AT);
  const spec = process.env.CRASH_RANDOM;
  if (spec) random = parseRandom(spec);
}

/** `name` or `name@N` → the point and which hit of it. */
function parsePoint(spec: string | undefined): Armed | undefined {
  const match = spec ? /^(.+?)(?:@(\d+))?$/.exec(spec.trim()) : null;
  return match?.[1] ? { name: match[1], hit: match[2] ? Number(match[2]) : 1 } : undefined;
}

function parseRandom(spec: string): RandomMode {
  const fields = new Map(spec.split(',').map((part) => part.split('=', 2) as [string, string]));
  const seed = Number(fields.get('seed') ?? 1);
  const probability = Number(fields.get('p') ?? 0.05);
  if (!Number.isFinite(seed) || !(probability >= 0 && probability <= 1)) {
    throw new Error(`CRASH_RANDOM="${spec}" should look like seed=7,p=0.05[,match=prefix]`);
  }
  return { seed, probability, match: fields.get('match') ?? '', next: mulberry32(seed) };
}

/** A tiny seeded PRNG: the same seed gives the same crash decisions. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
