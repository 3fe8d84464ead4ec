/**
 * What the log can record. (The course's shared/json.ts, as chapter 6 uses it:
 * repeated here because the engine imports nothing from the course.)
 *
 * Step results are written to a log as JSON and handed back on replay. A value
 * JSON cannot carry faithfully would come back *different* — `undefined`
 * vanishes, a `Date` becomes a string, a `Map` becomes `{}` — and the replayed
 * workflow would quietly take another path than the original. So we refuse
 * such values before anything is recorded, and say where they came from.
 *
 * One exception, since chapter 6: a step that returns nothing
 * (`undefined`, the most common result of all) is recorded as the tag
 * {@link UNDEFINED_IN_LOG} and replayed as `undefined` — see {@link encodeForLog}.
 * Only the whole value: an `undefined` inside an object or array is still refused.
 */
import { UnserializableResultError } from './errors.ts';

/** How the log stores a value that is `undefined` as a whole: this JSON object, and nothing else. */
export const UNDEFINED_IN_LOG: Readonly<{ $undefined: true }> = Object.freeze({ $undefined: true });

/** True for `{ "$undefined": true }` and nothing else: the log's tag for `undefined`. */
function isUndefinedTag(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] === '$undefined' && (value as { $undefined: unknown }).$undefined === true;
}

/**
 * The value as the log stores it: `undefined` becomes {@link UNDEFINED_IN_LOG},
 * anything else is itself — after {@link assertJsonSafe}. A value that *is* the
 * tag (`{ $undefined: true }`) would replay as `undefined`, so it is refused.
 */
export function encodeForLog(value: unknown, where: string): unknown {
  if (value === undefined) return UNDEFINED_IN_LOG;
  if (isUndefinedTag(value)) {
    throw new UnserializableResultError(
      `${where} returned { "$undefined": true }, which is how the log records undefined: it would replay as undefined. Nothing was recorded.`,
      'Return another shape (the key $undefined is the engine\'s), or undefined itself.',
    );
  }
  assertJsonSafe(value, where);
  return value;
}

/** A value read from the log, as the code gave it: {@link UNDEFINED_IN_LOG} back to `undefined`. */
export function decodeFromLog(value: unknown): unknown {
  return isUndefinedTag(value) ? undefined : value;
}

/**
 * Throw {@link UnserializableResultError} unless `value` survives
 * `JSON.parse(JSON.stringify(value))` unchanged. `where` names the workflow
 * and step, e.g. `workflow order-1, step charge_card`.
 */
export function assertJsonSafe(value: unknown, where: string): void {
  const problem = findProblem(value, '$', new Set());
  if (problem) {
    throw new UnserializableResultError(
      `${where} returned a value JSON cannot record faithfully: ${problem}. Nothing was recorded.`,
      'Return plain data — strings, finite numbers, booleans, null, arrays and plain objects (a Date as an ISO string, a BigInt as a string).',
    );
  }
}

function findProblem(value: unknown, path: string, seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'string':
      // PostgreSQL's jsonb cannot store the NUL character.
      return value.includes('\u0000') ? `${path} contains a NUL character (\\u0000)` : undefined;
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${path} is ${value}`;
    case 'undefined':
      return `${path} is undefined`;
    case 'bigint':
      return `${path} is a BigInt`;
    case 'function':
      return `${path} is a function`;
    case 'symbol':
      return `${path} is a symbol`;
  }
  if (value === null) return undefined;
  const object = value as object;
  if (seen.has(object)) return `${path} refers back to itself (a cycle)`;
  seen.add(object);
  try {
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length; i++) {
        const problem = findProblem(object[i], `${path}[${i}]`, seen);
        if (problem) return problem;
      }
      return undefined;
    }
    const proto = Object.getPrototypeOf(object);
    if (proto !== Object.prototype && proto !== null) {
      return `${path} is a ${object.constructor?.name ?? 'class instance'}, not a plain object`;
    }
    for (const [key, inner] of Object.entries(object)) {
      const problem = findProblem(inner, `${path}.${key}`, seen);
      if (problem) return problem;
    }
    return undefined;
  } finally {
    seen.delete(object);
  }
}
