/**
 * Notice when the learner saves a file in an exercise folder.
 *
 * Two ways at once, because file-change events are unreliable exactly where
 * learners work: WSL2 on a Windows folder (/mnt/c/…), Docker bind mounts,
 * network drives deliver none, and say nothing. So the folder is watched
 * (fast, where it works) AND polled once a second (always works); either
 * one only asks "do the files differ from what was last tested?", so a
 * change is acted on once. `--poll` turns the events off altogether.
 */
import fs from 'node:fs';
import path from 'node:path';
import { isLearnerFile } from './exercises.ts';

export interface FolderWatch {
  /** 'events+polling', or 'polling' when events were turned off or could not be had. */
  mode: 'events+polling' | 'polling';
  close(): void;
}

/** A cheap snapshot of the folder's learner files: name, size and mtime of each. */
export function snapshot(dir: string): string {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir).filter(isLearnerFile).sort();
  } catch {
    return '';
  }
  return names
    .map((name) => {
      try {
        const stat = fs.statSync(path.join(dir, name));
        return `${name}:${stat.size}:${stat.mtimeMs}`;
      } catch {
        return `${name}:gone`;
      }
    })
    .join('|');
}

/**
 * Call `onChange` when the learner files in `dir` change (debounced: an
 * editor's save is often several writes). Starts from the folder as it is now.
 */
export function watchFolder(dir: string, onChange: () => void, { poll = false, intervalMs = 1000, debounceMs = 150 } = {}): FolderWatch {
  let last = snapshot(dir);
  let timer: NodeJS.Timeout | undefined;
  const check = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const now = snapshot(dir);
      if (now !== last) {
        last = now;
        onChange();
      }
    }, debounceMs);
  };

  const poller = setInterval(check, intervalMs);
  let watcher: fs.FSWatcher | undefined;
  if (!poll) {
    try {
      watcher = fs.watch(dir, check);
      watcher.on('error', () => {
        watcher?.close(); // the poller carries on alone
        watcher = undefined;
      });
    } catch {
      watcher = undefined; // e.g. ENOSPC (too many watches) or a file system without events
    }
  }
  return {
    mode: watcher ? 'events+polling' : 'polling',
    close() {
      clearInterval(poller);
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
