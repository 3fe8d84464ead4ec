// A Node module resolution hook, registered by importImpl (impl.ts) in the
// driver processes: a module of the chapter an exercise extends that the
// exercise has its own file for (say chapter 6's worker.ts) resolves to the
// file under test instead. The grading vitest config does the same in the
// test processes. Plain JavaScript: it runs in the loader's own thread.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** @type {Array<{ chapterDir: string, implDir: string, files: string[] }>} */
const overlays = [];

export function initialize(overlay) {
  overlays.push(overlay);
}

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  if (!resolved.url.startsWith('file:')) return resolved;
  const file = fileURLToPath(resolved.url);
  for (const { chapterDir, implDir, files } of overlays) {
    const prefix = `${chapterDir}${path.sep}`;
    if (file.startsWith(prefix) && files.includes(file.slice(prefix.length))) {
      // Resolved afresh, as an import of it from beside it would be: the same module, not a second copy.
      return nextResolve(pathToFileURL(path.join(implDir, file.slice(prefix.length))).href, context);
    }
  }
  return resolved;
}
