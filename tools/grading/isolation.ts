/**
 * How far a submission's code is kept from the grader, from other
 * submissions, and from outliving its grading.
 *
 * Graded as root, each submission runs as a user of its own: a numeric uid
 * and gid from a range no account uses (no /etc/passwd entry is needed to
 * run as one, and none is left behind). The test process drops to it before
 * it imports any code under test (setup.ts). Then the code under test
 *
 *   - cannot open the grader's results file (0600, in a 0700 folder), nor
 *     read the environment or memory of the grader's processes (another
 *     user's /proc entries are closed to it);
 *   - cannot read another submission's workspace (0700, its own user's), nor
 *     write the reports (the grader writes them, after every process of every
 *     submission user is gone);
 *   - cannot outlive grading: when its run ends, every process of its user is
 *     killed — detached, double-forked or not (`killUser`), and what it left
 *     in the shared temp folders is removed (`cleanUpUser`).
 *
 * Not root, there is no second user to run as: the code under test runs as
 * the grader's own user, and the report says so (`isolation: none`). The
 * results channel still cannot be forged from the progress channel, junk in
 * either cannot crash the grader (run-specs.ts), and the processes a run
 * started are found by a tag in their environment and killed (`killTagged`)
 * — but code running as the grader's user can, in principle, reach what the
 * grader reaches, and clear the tag. Grade a class you do not trust as root
 * (a container, a CI job).
 */
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { courseRoot } from './impl.ts';

export type Isolation =
  | { kind: 'user'; summary: string; namespaces: boolean }
  | { kind: 'none'; summary: string };

/**
 * What of the course a submission's test process still sees inside its
 * namespace: what it runs on. Everything else of the checkout — `solutions/`
 * (the reference answers), `exercises/`, `docs/`, `.course-data/`, the
 * fixture class — is hidden under an empty folder, and so is every folder
 * the submissions came from.
 */
const COURSE_KEPT = ['node_modules', 'shared', 'chapters', 'tools', 'package.json', 'tsconfig.json'];

/**
 * `command` wrapped to run in namespaces of its own (as root, with
 * util-linux's `unshare`): a PID namespace — it sees its own processes only,
 * not the grader's command line (which names the class folder), and when its
 * first process dies the kernel kills every other one in it — and a mount
 * namespace where the checkout shows only COURSE_KEPT and each folder in
 * `hide` is an empty one. `scratch` is a folder private to the grader, for
 * the mounts' working view.
 */
export function inNamespaces(
  command: string[],
  { hide, scratch, files = [], workdir }: { hide: string[]; scratch: string; files?: string[]; workdir?: string },
): string[] {
  // Never hide a folder that holds what the run needs (the grader's scratch folder, the
  // workspace, the course): a submission derived into /tmp has /tmp as its parent.
  const needed = [scratch, courseRoot, ...(workdir ? [workdir] : [])].map((p) => path.resolve(p));
  const holds = (dir: string, p: string) => p === dir || p.startsWith(`${dir}${path.sep}`);
  hide = hide.map((dir) => path.resolve(dir)).filter((dir) => dir !== path.parse(dir).root && !needed.some((p) => holds(dir, p)));
  const keep = path.join(scratch, 'course');
  fs.mkdirSync(keep, { mode: 0o700 });
  const script = [
    'set -e',
    'mount --make-rprivate /',
    // A view of the whole checkout, to bind back what is kept; then the checkout hidden under an empty folder.
    'mount --bind "$COURSE" "$KEEP"',
    'mount -t tmpfs -o mode=755 course "$COURSE"',
    'for name in $KEPT; do',
    '  if [ -d "$KEEP/$name" ]; then mkdir -p "$COURSE/$name"; elif [ -e "$KEEP/$name" ]; then touch "$COURSE/$name"; else continue; fi',
    '  mount --bind "$KEEP/$name" "$COURSE/$name"',
    'done',
    '[ -d "$COURSE/tools/grading/fixtures" ] && mount -t tmpfs -o mode=755 fixtures "$COURSE/tools/grading/fixtures"',
    // Single files it runs on elsewhere in the checkout (the instructor-only specs, in solutions/), and nothing beside them.
    'IFS=":"; for file in $FILES; do',
    '  rel="${file#"$COURSE"/}"; [ -f "$KEEP/$rel" ] || continue',
    '  mkdir -p "$(dirname "$COURSE/$rel")"; touch "$COURSE/$rel"; mount --bind "$KEEP/$rel" "$COURSE/$rel"',
    'done; unset IFS',
    'umount -l "$KEEP"',
    'for dir in "$@"; do [ "$dir" = -- ] && break; [ -d "$dir" ] && mount -t tmpfs -o mode=755 hidden "$dir"; done',
    'while [ "$1" != -- ]; do shift; done; shift',
    'exec "$@"',
  ].join('\n');
  return [
    'unshare', '--mount', '--pid', '--fork', '--mount-proc', '--kill-child',
    'env', `COURSE=${courseRoot}`, `KEEP=${keep}`, `KEPT=${COURSE_KEPT.join(' ')}`, `FILES=${files.filter((f) => f.startsWith(`${courseRoot}${path.sep}`)).join(':')}`,
    'sh', '-c', script, 'sandbox', ...hide, '--', ...command,
  ];
}

/** Whether `unshare` can make PID and mount namespaces here (root, and a kernel and container that allow it). */
function namespacesWork(): boolean {
  const probe = spawnSync('unshare', ['--mount', '--pid', '--fork', '--mount-proc', 'sh', '-c', 'mount -t tmpfs probe /mnt && test "$$" = 1'], { timeout: 10_000 });
  return probe.status === 0;
}

/** A submission's user: what its test processes run as. */
export interface SubmissionUser {
  uid: number;
  gid: number;
}

/**
 * Submission users are taken from a block of 10,000 ids no account uses: far
 * above what useradd hands out (up to 60000) and the usual container sub-uid
 * ranges (100000 on), below 2^31 (Node's limit for a spawn's uid), at a
 * random offset per grading run so two runs at once do not share users — and
 * inside the ids this process's user namespace maps (in a rootless container
 * it may map few).
 */
const runBase = pickBase();

function pickBase(): number {
  let ranges: Array<{ start: number; length: number }> = [{ start: 0, length: 2 ** 32 - 1 }];
  try {
    ranges = fs
      .readFileSync('/proc/self/uid_map', 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.trim().split(/\s+/).map(Number))
      .map(([inside, , length]) => ({ start: inside!, length: length! }));
  } catch {
    // not Linux: the whole range
  }
  const widest = ranges.sort((a, b) => b.length - a.length)[0]!;
  const low = Math.max(widest.start, widest.start + Math.min(200_000, Math.floor(widest.length / 2)));
  const high = Math.min(widest.start + widest.length, 2 ** 31 - 1) - 10_000;
  if (high <= low) return low; // too few ids mapped: the probe in detectIsolation fails, and says so
  const blocks = Math.floor((high - low) / 10_000);
  return low + randomInt(0, Math.max(1, Math.min(blocks, 100_000))) * 10_000;
}
let nextUser = 0;
/** Users handed out and not yet cleaned up: killed on exit, whatever happens. */
const live = new Set<number>();

/**
 * What this grader can do here. As root, it checks that a submission user can
 * actually read the course (a checkout in a private home folder cannot be) —
 * if not, it grades without users and says why.
 */
export function detectIsolation(): Isolation {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { kind: 'none', summary: 'none: not graded as root, so submissions run as the grader\'s own user' };
  }
  const probe = { uid: runBase + 9_999, gid: runBase + 9_999 };
  const files = [path.join(courseRoot, 'node_modules', 'vitest', 'package.json'), path.join(courseRoot, 'tools', 'grading', 'setup.ts'), path.join(courseRoot, 'shared')];
  const check = spawnSync(process.execPath, ['-e', `for (const f of ${JSON.stringify(files)}) require('node:fs').accessSync(f, require('node:fs').constants.R_OK)`], {
    ...probe,
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (check.status !== 0) {
    const why = /EACCES[^\n]*/.exec(check.stderr)?.[0] ?? check.error?.message ?? `exit ${check.status}`;
    return {
      kind: 'none',
      summary: `none: a submission user cannot read the course at ${courseRoot} (${why}); move the course where others can read it (e.g. /srv) to grade with a user per submission`,
    };
  }
  if (!namespacesWork()) {
    return {
      kind: 'user',
      namespaces: false,
      summary:
        'user: each submission runs as a user of its own; its processes are killed when its grading ends. No namespaces (unshare is missing or not allowed here): it can read what every user may read, the reference answers in the checkout among it',
    };
  }
  return {
    kind: 'user',
    namespaces: true,
    summary:
      'user and namespaces: each submission runs as a user of its own, sees its own processes only and of the course only what it runs on (not solutions/, not the class); its processes are killed when its grading ends',
  };
}

/** A fresh user for one submission. */
export function newSubmissionUser(): SubmissionUser {
  const id = runBase + nextUser++;
  live.add(id);
  return { uid: id, gid: id };
}

/** Make `dir` (a workspace) the user's own, and private to it. */
export function handOver(dir: string, user: SubmissionUser): void {
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const walk = (p: string) => {
    const stat = fs.lstatSync(p);
    fs.lchownSync(p, user.uid, user.gid);
    if (stat.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(dir);
  fs.chmodSync(dir, 0o700);
}

/**
 * SIGKILL every process whose real or effective user is `uid`, until none is
 * left (a process that forks while we look is found on the next pass).
 */
export function killUser(uid: number): void {
  for (let pass = 0; pass < 50; pass++) {
    const found = processesOf(uid);
    if (found.length === 0) return;
    for (const pid of found) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

/**
 * SIGKILL every process whose environment carries `GRADE_SANDBOX=<tag>`: the
 * test processes of one run and whatever they started, detached or not —
 * unless it cleared its environment. The fallback when there is no user of
 * its own to kill by (not root); as root, `killUser` misses nothing.
 */
export function killTagged(tag: string): void {
  const needle = Buffer.from(`\0GRADE_SANDBOX=${tag}\0`);
  const first = Buffer.from(`GRADE_SANDBOX=${tag}\0`);
  for (let pass = 0; pass < 50; pass++) {
    let found = 0;
    for (const pid of allPids()) {
      if (pid === process.pid) continue;
      try {
        const environ = fs.readFileSync(`/proc/${pid}/environ`);
        if (environ.includes(needle) || environ.subarray(0, first.length).equals(first)) {
          found++;
          process.kill(pid, 'SIGKILL');
        }
      } catch {
        // ended, or not ours to read
      }
    }
    if (found === 0) return;
  }
}

function allPids(): number[] {
  try {
    return fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
  } catch {
    return [];
  }
}

/** The live (not zombie) pids owned by `uid`, from /proc (Linux). */
export function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const name of allPids()) {
    try {
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8');
      const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
      // A zombie has ended already (it waits for its parent to read its exit status): nothing to kill.
      if (/^State:\s+Z/m.test(status)) continue;
      if (uids && (Number(uids[1]) === uid || Number(uids[2]) === uid)) pids.push(Number(name));
    } catch {
      // ended while we looked
    }
  }
  return pids;
}

/** After a submission: no process of its user left, nothing of its user left in the shared temp folders. */
export function cleanUpUser(user: SubmissionUser): void {
  killUser(user.uid);
  for (const dir of new Set([os.tmpdir(), '/tmp', '/var/tmp', '/dev/shm'])) {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      try {
        if (fs.lstatSync(p).uid === user.uid) fs.rmSync(p, { recursive: true, force: true });
      } catch {
        // gone, or not ours to remove
      }
    }
  }
  live.delete(user.uid);
}

process.once('exit', () => {
  for (const uid of live) killUser(uid);
});
