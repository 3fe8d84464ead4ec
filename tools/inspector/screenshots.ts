/** `npm run inspector -- --screenshots DIR`: the docs' PNGs (written in a later commit). */
export async function takeScreenshots(_dir: string): Promise<void> {
  throw new Error('--screenshots: not written yet');
}
