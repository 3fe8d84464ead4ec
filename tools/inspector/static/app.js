// The inspector's page: the list of workflows, or one workflow's timeline,
// as the server pushes them (Server-Sent Events: /api/events). No polling
// loop: the page renders what arrives, and EventSource reconnects by itself.
//
// Every value from the log — ids, names, inputs, outputs, errors, owners —
// is anybody's text. It only ever reaches the page as a text node (h() below,
// textContent); no innerHTML anywhere in this file. Links are built from
// encodeURIComponent, always under "/?".
'use strict';

const params = new URLSearchParams(location.search);
const workflowId = params.get('id');
const app = document.getElementById('app');
const statusPill = document.getElementById('db-status');
let config = { allowActions: false, database: '' };
let lastData = null;
let lastKind = null;
/** A message from the last action (retry, cancel), kept across pushes. */
let actionMessage = null;
/** The Cancel button was clicked once: the page asks for a reason and a second click. */
let confirmingCancel = false;
/** An action's request is in flight: its buttons stay disabled whatever is pushed meanwhile. */
let busy = false;
/** What has been typed into the page's inputs (by id): a push rebuilds the page, and must not wipe it. */
const drafts = new Map();

// ── building the DOM ─────────────────────────────────────────────────────────

/** An element with properties and children; strings and numbers become text nodes. */
function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') element.className = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key === 'style') Object.assign(element.style, value);
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function workflowHref(id) {
  return `/?id=${encodeURIComponent(id)}`;
}

// ── formatting ───────────────────────────────────────────────────────────────

const asDate = (value) => (value ? new Date(value) : null);

function clock(value) {
  const date = asDate(value);
  return date ? date.toISOString().replace('T', ' ').slice(0, 23) : '—';
}

function timeOfDay(value) {
  const date = asDate(value);
  return date ? date.toISOString().slice(11, 23) : '—';
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(ms)} ms`;
  if (abs < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (abs < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((abs % 60_000) / 1000)} s`;
  if (abs < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} d`;
}

function ago(value, now) {
  const date = asDate(value);
  if (!date) return '—';
  return `${duration(asDate(now).getTime() - date.getTime())} ago`;
}

function brief(value, max = 120) {
  if (value === undefined) return '(nothing)';
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function pretty(value) {
  if (value === undefined) return '(nothing: undefined)';
  return JSON.stringify(value, null, 2);
}

function badge(status) {
  return h('span', { className: `badge ${status}` }, status);
}

function workflowLink(id) {
  return h('a', { href: workflowHref(id), className: 'id' }, id);
}

const CHILD_EVENT = 'durable:child:';

/** An event's name as the page says it: a child's end links to the child; any other name is quoted text. */
function eventName(name) {
  if (name.startsWith(CHILD_EVENT)) return h('span', { className: 'event-name child' }, 'end of child ', workflowLink(name.slice(CHILD_EVENT.length)));
  return h('span', { className: 'event-name' }, JSON.stringify(name));
}

/** The names of a park's events, said briefly: one name, or a count (and how many are children's ends). */
function eventsBrief(names) {
  if (names.length === 1) return names[0].startsWith(CHILD_EVENT) ? `the end of child ${names[0].slice(CHILD_EVENT.length)}` : `event ${JSON.stringify(names[0])}`;
  const children = names.filter((n) => n.startsWith(CHILD_EVENT)).length;
  if (children === names.length) return `${names.length} events: the ends of ${children} children`;
  const shown = names.slice(0, 3).map((n) => JSON.stringify(n)).join(', ');
  return `${names.length} events: ${shown}${names.length > 3 ? ', …' : ''}`;
}

function seqRange(items) {
  return items.length === 1 ? `#${items[0].seq}` : `#${items[0].seq}–#${items[items.length - 1].seq}`;
}

// ── live updates ─────────────────────────────────────────────────────────────

function setStatus(state, message) {
  statusPill.textContent = message;
  statusPill.className = `status ${state}`;
  statusPill.dataset.state = state;
  document.body.classList.toggle('stale', state !== 'connected');
}

function connect() {
  // The page's own query is the view: ?id=… one workflow, or the list's filters.
  const events = new EventSource(`/api/events${location.search}`);
  events.addEventListener('hello', (event) => {
    config = JSON.parse(event.data);
    document.getElementById('db-name').textContent = `database ${config.database}`;
    document.getElementById('footer').textContent = `Live: the server pushes every change to this page (Server-Sent Events); the page never polls. ${config.allowActions ? 'Actions are on (--allow-actions).' : 'Read-only: start with --allow-actions to retry failed workflows and cancel running ones here.'}`;
    if (lastData) render(lastKind, lastData);
  });
  events.addEventListener('status', (event) => {
    const status = JSON.parse(event.data);
    setStatus(status.state, status.message);
  });
  events.addEventListener('list', (event) => render('list', JSON.parse(event.data)));
  events.addEventListener('workflow', (event) => render('workflow', JSON.parse(event.data)));
  events.addEventListener('error', () => {
    // The inspector itself is gone (stopped, restarting): EventSource tries again every 2 s.
    if (events.readyState !== EventSource.OPEN) setStatus('unreachable', 'inspector unreachable — reconnecting');
  });
}

/**
 * The page again, from the data pushed. It is rebuilt whole; what the user
 * has in hand is carried over by id: what they typed, the input that has
 * the focus (and its selection), the lists they opened, the scroll.
 */
function render(kind, data) {
  lastKind = kind;
  lastData = data;
  const scroll = window.scrollY;
  const active = document.activeElement;
  const focused = active && active.id && app.contains(active) ? active : null;
  const selection = focused && typeof focused.selectionStart === 'number' ? [focused.selectionStart, focused.selectionEnd] : null;
  const open = Array.from(app.querySelectorAll('details[id]')).filter((d) => d.open).map((d) => d.id);
  app.replaceChildren(kind === 'list' ? listPage(data) : workflowPage(data));
  for (const [id, value] of drafts) {
    const input = document.getElementById(id);
    if (input && 'value' in input && input.value !== value) input.value = value;
  }
  for (const id of open) {
    const details = document.getElementById(id);
    if (details) details.open = true;
  }
  if (focused) {
    const again = document.getElementById(focused.id);
    if (again) {
      again.focus();
      if (selection && typeof again.setSelectionRange === 'function') again.setSelectionRange(selection[0], selection[1]);
    }
  }
  window.scrollTo(0, scroll);
}

app.addEventListener('input', (event) => {
  if (event.target && event.target.id) drafts.set(event.target.id, event.target.value);
});

// ── the list ─────────────────────────────────────────────────────────────────

function filterForm(filter) {
  const statusSelect = h(
    'select',
    { name: 'status', id: 'filter-status' },
    ['', 'running', 'completed', 'failed', 'cancelled'].map((s) => h('option', { value: s, selected: (filter.status || '') === s ? 'selected' : null }, s || 'any status')),
  );
  const input = (name, placeholder, value, label) =>
    h('label', {}, `${label} `, h('input', { name, id: `filter-${name}`, placeholder, value: value || '', size: name === 'name' ? 14 : 6 }));
  return h(
    'form',
    { className: 'filters', method: 'get', action: '/' },
    h('label', {}, 'status ', statusSelect),
    input('name', 'any name', filter.name, 'name'),
    input('newer', 'e.g. 15m', filter.newer, 'changed in the last'),
    input('older', 'e.g. 1d', filter.older, 'or more than … ago'),
    h('button', { type: 'submit' }, 'Filter'),
    h('a', { href: '/' }, 'clear'),
  );
}

function whereItIs(w) {
  switch (w.state) {
    case 'held':
      return `held by ${w.leaseOwner} · token ${w.fencingToken} · ${duration(w.leaseMsLeft)} left`;
    case 'waiting':
      if (w.waitEvents) return `waiting for ${eventsBrief(w.waitEvents)} · ${w.waitUntil ? `timeout in ${duration(w.leaseMsLeft)}` : 'no timeout'}`;
      return `waiting (nobody holds it) · runnable in ${duration(w.leaseMsLeft)}`;
    case 'runnable':
      return w.fencingToken === 0 ? 'runnable · never claimed' : `runnable · last held by ${w.leaseOwner ?? '?'} (token ${w.fencingToken})`;
    default:
      return '—';
  }
}

function listPage(data) {
  document.title = 'workflows — durable inspector';
  const rows = data.workflows.map((w) =>
    h(
      'tr',
      { dataset: { workflowId: w.id, status: w.status, state: w.state, parent: w.parentId ?? undefined, children: w.children || undefined } },
      h(
        'td',
        { className: 'id' },
        h('a', { href: workflowHref(w.id) }, w.id),
        w.parentId !== null ? h('div', { className: 'parent muted' }, '↳ child of ', h('a', { href: workflowHref(w.parentId), className: 'parent-link' }, w.parentId)) : null,
      ),
      h('td', {}, w.name),
      h('td', {}, badge(w.status), w.status === 'running' && w.cancelRequestedAt ? h('div', { className: 'cancelling' }, 'cancel requested') : null),
      h('td', { className: `where ${w.state}` }, whereItIs(w)),
      h('td', { className: 'num children' }, w.children ? `${w.children}${w.childrenRunning ? ` (${w.childrenRunning} running)` : ''}` : ''),
      h('td', { className: 'num' }, w.steps),
      h('td', { className: 'num' }, w.fencingToken),
      h('td', { className: 'ago', title: clock(w.createdAt) }, ago(w.createdAt, data.dbNow)),
      h('td', { className: 'ago', title: clock(w.updatedAt) }, ago(w.updatedAt, data.dbNow)),
      h('td', { className: 'error' }, w.error ? clip(w.error, 90) : ''),
    ),
  );
  return h(
    'section',
    { className: 'list' },
    h('h1', {}, 'Workflows'),
    filterForm(data.filter),
    h('p', { className: 'muted' }, `${data.workflows.length}${data.workflows.length === data.filter.limit ? '+' : ''} workflow(s), most recently changed first · database clock ${timeOfDay(data.dbNow)} UTC`),
    h(
      'table',
      { className: 'workflows' },
      h('thead', {}, h('tr', {}, ['id', 'name', 'status', 'where it is', 'children', 'entries', 'token', 'created', 'last change', 'error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 10, className: 'muted' }, 'no workflows match'))),
    ),
  );
}

// ── one workflow ─────────────────────────────────────────────────────────────

function leaseText(data) {
  const w = data.workflow;
  if (w.status !== 'running') return '— (finished: nobody holds it)';
  if (data.waiting && data.waiting.reason === 'event') {
    const timeout = data.waiting.until ? `, or its timeout at ${clock(data.waiting.until)} — in ${duration(data.waiting.inMs)}` : ' (no timeout)';
    return `parked waiting for ${eventsBrief(data.waiting.events)}${timeout}; held by nobody, no worker slot used`;
  }
  if (data.waiting) return `waiting for its ${data.waiting.reason === 'retry' ? 'retry (a back-off)' : 'sleep'} to end at ${clock(data.waiting.until)} — in ${duration(data.waiting.inMs)}; held by nobody`;
  if (w.leaseOwner && w.leaseMsLeft > 0) return `held by ${w.leaseOwner} · fencing token ${w.fencingToken} · ${duration(w.leaseMsLeft)} left`;
  if (w.fencingToken === 0) return 'runnable: never claimed yet';
  return `runnable: nobody holds it (last held by ${w.leaseOwner ?? 'nobody'}, token ${w.fencingToken}) — the next claim takes it`;
}

function deadlineText(w) {
  if (w.deadlineInMs === null) return 'none';
  return w.deadlineInMs >= 0 ? `in ${duration(w.deadlineInMs)} (${clock(w.deadlineAt)})` : `passed ${duration(-w.deadlineInMs)} ago (${clock(w.deadlineAt)})`;
}

/** POST an action to the inspector (same origin: the browser sends our Origin), and say what came back. */
async function act(path, body) {
  busy = true;
  render(lastKind, lastData);
  try {
    const response = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const answer = await response.json();
    actionMessage = { ok: response.ok, text: answer.message || answer.error || `HTTP ${response.status}` };
  } catch (error) {
    actionMessage = { ok: false, text: String(error) };
  } finally {
    busy = false;
  }
  render(lastKind, lastData);
}

function retryButton(w) {
  if (!config.allowActions || w.status !== 'failed') return null;
  return h('button', { className: 'action', id: 'retry', disabled: busy, onclick: () => act(`/api/workflows/${encodeURIComponent(w.id)}/retry`, {}) }, 'Retry this workflow');
}

/** Cancel, in two clicks: the first asks for a reason and says what a cancel does; the second sends it (engine.cancel's statement). */
function cancelControls(data) {
  const w = data.workflow;
  if (!config.allowActions || w.status !== 'running' || data.cancel) return null;
  if (!confirmingCancel) {
    return h('button', { className: 'action danger', id: 'cancel', disabled: busy, onclick: () => ((confirmingCancel = true), render(lastKind, lastData)) }, 'Cancel this workflow…');
  }
  const children = data.childrenByStatus.running ? ` Its ${data.childrenByStatus.running} running child workflow(s) are cancelled with it.` : '';
  return h(
    'div',
    { className: 'confirm', id: 'cancel-confirmation' },
    h('p', {}, `Cancel ${w.id}? Its run stops at its next step — a step running now has its signal aborted — and it ends cancelled; its code may compensate first (steps in ctx.nonCancellable still run). A workflow that sleeps or waits is woken to end.${children} This cannot be undone.`),
    h('label', {}, 'reason ', h('input', { id: 'cancel-reason', maxlength: 10000, size: 40, placeholder: 'cancelled by an operator (the inspector)' })),
    h(
      'button',
      {
        className: 'action danger',
        id: 'cancel-confirm',
        disabled: busy,
        onclick: () => {
          const reason = drafts.get('cancel-reason') || '';
          confirmingCancel = false;
          drafts.delete('cancel-reason');
          void act(`/api/workflows/${encodeURIComponent(w.id)}/cancel`, { reason });
        },
      },
      'Cancel it',
    ),
    h('button', { id: 'cancel-back', onclick: () => ((confirmingCancel = false), render(lastKind, lastData)) }, 'Keep it running'),
  );
}

function workflowPage(data) {
  const back = h('p', {}, h('a', { href: '/' }, '← all workflows'));
  if (!data.found) {
    document.title = 'not found — durable inspector';
    return h('section', {}, back, h('h1', {}, 'No such workflow'), h('p', {}, 'No workflow ', h('code', {}, data.id), ' in the log (yet). This page shows it as soon as it is started.'));
  }
  const w = data.workflow;
  document.title = `${w.id} — durable inspector`;
  const fact = (term, ...value) => [h('dt', {}, term), h('dd', {}, ...value)];
  const facts = h(
    'dl',
    { className: 'facts' },
    fact('status', badge(w.status), w.error ? ` ${w.error}` : ''),
    data.parent ? fact('parent', h('span', { id: 'parent' }, workflowLink(data.parent.id), ` (${data.parent.name}) `, badge(data.parent.status)), h('span', { className: 'muted' }, ' started it with ctx.startChild; it hears of this one’s end as an event')) : null,
    data.cancel ? fact('cancel', h('span', { id: 'cancel-request' }, `requested ${clock(data.cancel.requestedAt)} (${ago(data.cancel.requestedAt, data.dbNow)})${data.cancel.reason !== null ? ` — ${data.cancel.reason}` : ''}`), h('span', { className: 'muted' }, w.status === 'running' ? ' · its run stops at its next step (compensation excepted), then it ends cancelled' : '')) : null,
    fact('lease', h('span', { id: 'lease' }, leaseText(data))),
    fact('attempts', `${w.attempts} / ${w.maxAttempts}`, h('span', { className: 'muted' }, ' claims in a row with no word from their run (failed past the maximum)')),
    fact('deadline', deadlineText(w)),
    fact('created', clock(w.createdAt)),
    fact('last change', `${clock(w.updatedAt)} (${ago(w.updatedAt, data.dbNow)})`),
    fact('log', `${data.stepCount} recorded entr${data.stepCount === 1 ? 'y' : 'ies'} · ${data.failedAttempts} failed attempt(s) · ${data.timeline.takeovers} takeover(s)`),
  );
  const message = actionMessage && h('p', { className: `message ${actionMessage.ok ? 'ok' : 'bad'}`, id: 'action-message' }, actionMessage.text);
  return h(
    'section',
    { className: 'workflow', dataset: { status: w.status } },
    back,
    h('h1', {}, h('span', { className: 'id', id: 'workflow-id' }, w.id), ' ', h('span', { className: 'muted' }, `(${w.name})`), ' ', badge(w.status)),
    h('div', { className: 'actions' }, retryButton(w), cancelControls(data), message),
    facts,
    h(
      'div',
      { className: 'io' },
      h('div', {}, h('h2', {}, 'Input'), h('pre', { id: 'input' }, pretty(w.input))),
      w.status === 'completed' ? h('div', {}, h('h2', {}, 'Output'), h('pre', { id: 'output' }, pretty(w.output))) : null,
      w.status === 'failed' ? h('div', {}, h('h2', {}, 'Error'), h('pre', { id: 'error', className: 'error' }, w.error)) : null,
    ),
    waitsSection(data),
    h('h2', {}, 'Timeline'),
    h('p', { className: 'muted' }, 'What the log recorded, in order, and what it implies between the records: which claim (fencing token) recorded each entry, where a run went to wait (a back-off, a sleep, a park for events), where one run stopped and another took over. Times are the database’s; a step’s start is not recorded — its duration is measured from the previous record of the same run (≈: a claim’s latency included). Entries recorded together (children started in one transaction, waits that ended together) are one row.'),
    timelineTable(data.timeline, data.dbNow, data.children, data.parent),
    childrenSection(data),
    eventsSection(data),
  );
}

// ── chapter 9: waits, events, children ──────────────────────────────────────

function waitsSection(data) {
  if (data.waits.length === 0) return null;
  const parked = data.workflow.status === 'running' && data.waiting && data.waiting.reason === 'event';
  const arrived = data.waits.filter((w) => w.arrived).length;
  const rows = data.waits.map((wait) =>
    h(
      'tr',
      { dataset: { seq: wait.seq, name: wait.name, arrived: wait.arrived ? 'yes' : 'no' } },
      h('td', { className: 'num' }, `#${wait.seq}`),
      h('td', {}, eventName(wait.name)),
      h('td', {}, wait.until ? `${clock(wait.until)}${parked ? ` (in ${duration(new Date(wait.until).getTime() - new Date(data.dbNow).getTime())})` : ''}` : 'none'),
      h('td', {}, wait.arrived ? `sent ${clock(wait.arrived.sentAt)} (key ${JSON.stringify(wait.arrived.key)}): taken when the workflow is woken` : 'not sent yet'),
    ),
  );
  return h(
    'div',
    { className: 'section', id: 'waits' },
    h('h2', {}, `Waits (${data.waits.length})`),
    h(
      'p',
      { className: 'muted' },
      parked
        ? `Parked for ${data.waits.length === 1 ? 'this wait' : `these ${data.waits.length} waits, made together`}: held by nobody, no worker slot used. It is woken once — when every wait has its event (${arrived} of ${data.waits.length} sent so far), or a timeout passes.`
        : 'The waits it was parked in when its run stopped waiting (a cancel request, or its deadline, woke it): rows of the waits table, not in the log.',
    ),
    h('table', { className: 'waits' }, h('thead', {}, h('tr', {}, ['at', 'waiting for', 'timeout', 'its event'].map((c) => h('th', {}, c)))), h('tbody', {}, rows)),
  );
}

function eventsSection(data) {
  if (data.eventCount === 0) return null;
  const rows = data.events.map((event) =>
    h(
      'tr',
      { dataset: { name: event.name, key: event.key, taken: event.takenAtSeq === null ? 'no' : String(event.takenAtSeq) } },
      h('td', { className: 'num' }, event.arrival),
      h('td', {}, eventName(event.name)),
      h('td', { className: 'key' }, event.key),
      h('td', { className: 'ago', title: clock(event.sentAt) }, clock(event.sentAt)),
      h('td', {}, event.takenAtSeq === null ? h('span', { className: 'untaken' }, 'not taken yet') : `by the wait at #${event.takenAtSeq}`),
      h('td', { className: 'payload' }, brief(event.payload, 140)),
    ),
  );
  return h(
    'div',
    { className: 'section', id: 'events' },
    h('h2', {}, `Events (${data.eventCount})`),
    h(
      'p',
      { className: 'muted' },
      `Sent to it by engine.send (a child’s end, by the engine), kept as rows until a wait takes them — oldest first, one wait each; the same key again is the same event. ${data.eventsUntaken} not taken yet.${data.events.length < data.eventCount ? ` The first ${data.events.length} shown.` : ''}`,
    ),
    h('table', { className: 'events' }, h('thead', {}, h('tr', {}, ['arrival', 'name', 'key', 'sent at', 'taken', 'payload'].map((c) => h('th', {}, c)))), h('tbody', {}, rows)),
  );
}

function childrenSection(data) {
  if (data.childCount === 0) return null;
  const counts = Object.entries(data.childrenByStatus).map(([status, n]) => `${n} ${status}`).join(', ');
  const rows = data.children.map((child) =>
    h(
      'tr',
      { dataset: { childId: child.id, status: child.status } },
      h('td', { className: 'num' }, child.seq === null ? '' : `#${child.seq}`),
      h('td', { className: 'id' }, workflowLink(child.id)),
      h('td', {}, child.name),
      h('td', {}, badge(child.status)),
      h('td', { className: 'ago', title: clock(child.updatedAt) }, ago(child.updatedAt, data.dbNow)),
      h('td', { className: 'error' }, child.error ? clip(child.error, 90) : ''),
    ),
  );
  return h(
    'div',
    { className: 'section', id: 'children' },
    h('h2', {}, `Children (${data.childCount}: ${counts})`),
    h('p', { className: 'muted' }, `Started with ctx.startChild, each with the id <this id>/<its position in this log>; each one’s end is sent here as an event.${data.children.length < data.childCount ? ` The first ${data.children.length} shown.` : ''}`),
    h('table', { className: 'children' }, h('thead', {}, h('tr', {}, ['at', 'id', 'name', 'status', 'last change', 'error'].map((c) => h('th', {}, c)))), h('tbody', {}, rows)),
  );
}

// ── the timeline ─────────────────────────────────────────────────────────────

function timelineTable(timeline, now, children, parent) {
  const childStatus = new Map(children.map((c) => [c.id, c.status]));
  const from = new Date(timeline.from).getTime();
  const span = Math.max(1, new Date(timeline.to).getTime() - from);
  const pct = (value) => `${(((new Date(value).getTime() - from) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `${Math.max(0.4, ((new Date(b).getTime() - new Date(a).getTime()) / span) * 100).toFixed(3)}%`;
  const bar = (className, a, b, title) => h('span', { className: `bar ${className}`, title, style: { left: pct(a), width: width(a, b) } });
  const tick = (className, at, title) => h('span', { className: `tick ${className}`, title, style: { left: pct(at) } });
  const offset = (at) => `+${((new Date(at).getTime() - from) / 1000).toFixed(3)} s`;
  const took = (event) => {
    if (event.durationMs === null) return h('span', { title: 'the run before was taken over: when this one started is not recorded' }, '?');
    return h('span', { title: event.approx ? 'measured from the end of the wait, or the creation: includes the claim’s latency' : 'since the previous record of the same run' }, `${event.approx ? '≈' : ''}${duration(event.durationMs)}`);
  };

  const rows = timeline.events.map((event) => {
    const cells = { when: '', track: [], what: '', token: '', took: '', detail: '' };
    const data = { kind: event.type };
    let className = event.type;
    switch (event.type) {
      case 'claim': {
        data.token = event.token;
        data.claim = event.kind;
        className += ` ${event.kind}`;
        cells.token = `${event.token}`;
        const by = event.owner ? ` by ${event.owner}` : '';
        if (event.kind === 'first') cells.what = `claimed${by} (token ${event.token})`;
        else if (event.kind === 'resumed') cells.what = `claimed again after the wait${by} (token ${event.token})`;
        else {
          cells.what = `⚠ taken over${by}: token ${event.token}`;
          const { from, to } = event.stopped;
          const why = 'killed, or frozen past its lease (or it failed and was retried)';
          cells.detail =
            from === to
              ? `the run of token ${from}${event.afterWait ? ' (the claim after the wait)' : ''} stopped without a word${event.lost ? ', having recorded nothing' : ''} — ${why}. What was recorded is replayed, never run again.`
              : `the runs of tokens ${from} to ${to} stopped without a word (${event.lost} of them recorded nothing) — ${why}. What was recorded is replayed, never run again.`;
        }
        break;
      }
      case 'step': {
        data.seq = event.seq;
        data.name = event.name;
        data.token = event.token;
        cells.when = offset(event.at);
        cells.what = `${event.error ? '✗' : '✓'} #${event.seq} ${event.name}`;
        cells.token = `${event.token}`;
        cells.took = took(event);
        cells.detail = event.error ? `failed for good after ${event.error.attempts} attempt(s): ${event.error.name}: ${event.error.message}` : `→ ${brief(event.output)}`;
        if (event.error) className += ' failed';
        cells.track = event.startedAt ? bar(event.error ? 'failed' : 'run', event.startedAt, event.at, `${clock(event.startedAt)} → ${clock(event.at)}`) : tick('run', event.at, clock(event.at));
        break;
      }
      case 'attempt-failed': {
        data.seq = event.seq;
        data.name = event.name;
        data.token = event.token;
        data.attempt = event.attempt;
        cells.when = offset(event.at);
        cells.what = `✗ #${event.seq} ${event.name} — attempt ${event.attempt} failed`;
        cells.token = `${event.token}`;
        cells.took = took(event);
        cells.detail = `${event.error.name}: ${event.error.message}`;
        cells.track = event.startedAt ? bar('failed', event.startedAt, event.at, `${clock(event.startedAt)} → ${clock(event.at)}`) : tick('failed', event.at, clock(event.at));
        break;
      }
      case 'sleep': {
        data.seq = event.seq;
        data.token = event.token;
        cells.when = offset(event.at);
        cells.what = `☾ #${event.seq} sleep recorded`;
        cells.token = `${event.token}`;
        cells.detail = `until ${clock(event.until)}`;
        cells.track = tick('sleep', event.at, clock(event.at));
        break;
      }
      case 'child': {
        data.seq = event.seq;
        data.token = event.token;
        data.count = event.children.length;
        data.children = event.children.map((c) => c.id).join(' ');
        cells.when = offset(event.at);
        cells.token = `${event.token}`;
        cells.took = took(event);
        const one = event.children.length === 1 ? event.children[0] : null;
        cells.what = one ? `↳ #${one.seq} started child ${one.name}` : `↳ ${seqRange(event.children)} started ${event.children.length} children`;
        const statusOf = (id) => (childStatus.get(id) ? [' ', badge(childStatus.get(id))] : []);
        cells.detail = one
          ? h('span', {}, workflowLink(one.id), ...statusOf(one.id), ' — started in the same transaction as this record')
          : h(
              'details',
              { id: `children-${event.seq}` },
              h('summary', {}, `${event.children[0].id} … ${event.children[event.children.length - 1].id}, in one transaction`),
              h('ul', { className: 'plain' }, event.children.map((c) => h('li', {}, `#${c.seq} `, workflowLink(c.id), ` (${c.name})`, ...statusOf(c.id)))),
            );
        cells.track = tick('child', event.at, clock(event.at));
        break;
      }
      case 'event': {
        const got = event.waits.filter((w) => w.outcome === 'event').length;
        const outcome = got === event.waits.length ? 'event' : got === 0 ? 'timeout' : 'mixed';
        data.seq = event.seq;
        data.token = event.token;
        data.outcome = outcome;
        data.count = event.waits.length;
        data.name = event.waits[0].name;
        className += ` ${outcome}`;
        cells.when = offset(event.at);
        cells.token = `${event.token}`;
        const said = (w) =>
          w.outcome === 'timeout'
            ? ['timed out']
            : w.child
              ? [`got its end${w.payload && w.payload.status ? `: ${w.payload.status}` : ''}`, w.payload && w.payload.status === 'completed' ? ` → ${brief(w.payload.output, 80)}` : w.payload && w.payload.error ? ` — ${clip(w.payload.error, 80)}` : '']
              : [`got its event (key ${JSON.stringify(w.key)}${w.sentAt ? `, sent ${timeOfDay(w.sentAt)}` : ''}) → ${brief(w.payload, 80)}`];
        if (event.waits.length === 1) {
          const w = event.waits[0];
          cells.what = h('span', {}, `${w.outcome === 'timeout' ? '⏱' : '✉'} #${w.seq} wait for `, eventName(w.name));
          cells.detail = said(w).join('') + (event.bySend ? ' — recorded by its send' : '');
        } else {
          cells.what = `✉ ${seqRange(event.waits)} ${event.waits.length} waits ended`;
          cells.detail = h(
            'details',
            { id: `waits-${event.seq}` },
            h('summary', {}, `${got} got their events, ${event.waits.length - got} timed out — ${event.bySend ? 'each recorded by its send' : 'recorded together'}`),
            h('ul', { className: 'plain' }, event.waits.map((w) => h('li', {}, `#${w.seq} `, eventName(w.name), ': ', said(w).join('')))),
          );
        }
        cells.track = tick(outcome === 'timeout' ? 'timeout' : 'event', event.at, clock(event.at));
        break;
      }
      case 'cancel': {
        cells.when = offset(event.at);
        cells.what = '⊘ cancel requested';
        cells.detail = event.reason === null ? '' : `reason: ${event.reason}`;
        cells.track = tick('cancel', event.at, clock(event.at));
        break;
      }
      case 'wait': {
        data.reason = event.reason;
        data.endedBy = event.endedBy ?? 'now';
        className += ` ${event.reason}${event.current ? ' current' : ''}`;
        const until = event.until ?? timeline.to;
        cells.when = offset(event.from);
        const what = event.reason === 'retry' ? 'back-off before the next attempt' : event.reason === 'sleep' ? 'asleep' : `parked for ${eventsBrief(event.events || [])}`;
        cells.what = `‖ ${what} — ${event.ms === null ? 'no timeout' : `${event.approxFrom ? '≈' : ''}${duration(event.ms)}`}`;
        cells.took = event.ms === null ? '' : `${event.approxFrom ? '≈' : ''}${duration(event.ms)}`;
        const ended = {
          time: '',
          event: ` — woken by the send ${(event.events || []).length > 1 ? 'that filled its last wait' : 'of its event'} (${clock(event.until)})`,
          timeout: ' — its timeout passed',
          cancel: ` — cut short by the cancel request (${clock(event.until)})`,
          deadline: ` — cut short by the deadline (${clock(event.until)})`,
        }[event.endedBy] ?? '';
        const since = event.approxFrom ? ' (the park is not recorded: since the record before it)' : '';
        if (event.current) {
          cells.detail = event.until
            ? `released${since}: held by nobody, no worker slot used, until ${clock(event.until)} — now, ${duration(new Date(event.until).getTime() - new Date(now).getTime())} to go${event.reason === 'event' ? ', unless its events come first' : ''}`
            : `released${since}: held by nobody, no worker slot used, until its events come — no timeout`;
        } else {
          cells.detail = `released${since}: held by nobody, no worker slot used${event.endedBy === 'time' ? `, until ${clock(event.until)}` : ''}${ended}`;
        }
        cells.track = bar(`wait ${event.reason}`, event.from, until, `${clock(event.from)} → ${event.until ? clock(event.until) : 'its events'}`);
        break;
      }
      case 'now': {
        data.state = event.state;
        data.token = event.token;
        className += ` ${event.state}`;
        cells.when = offset(event.at);
        cells.token = `${event.token}`;
        if (event.state === 'running') {
          cells.what = `▶ running #${event.nextSeq} now`;
          cells.detail = `held by ${event.owner} (token ${event.token}), lease ${duration(event.leaseMsLeft)} left${event.cancelRequested ? ' — cancel requested: no further step starts outside ctx.nonCancellable' : ''}`;
          cells.took = event.sinceMs === null ? '' : `${duration(event.sinceMs)} so far`;
          if (event.startedAt) cells.track = bar('run current', event.startedAt, event.at, 'running now');
        } else if (event.state === 'runnable') {
          cells.what = '… runnable';
          cells.detail = event.token === 0 ? 'waiting for a worker to claim it' : `nobody holds it: the next claim takes it (token ${event.token + 1})${event.cancelRequested ? ' — and, cancel requested, ends it cancelled' : ''}`;
        } else if (event.state === 'waiting') {
          cells.what = '‖ waiting now';
          cells.detail = 'released until its wait ends (above); then any worker claims it';
          cells.token = '';
        } else if (event.state === 'completed') {
          cells.what = '✓ completed';
          cells.took = event.sinceMs === null ? '' : duration(event.sinceMs);
          cells.detail = `the output is recorded (above)${parent ? ` and sent to its parent ${parent.id} as an event` : ''}`;
          cells.track = tick('done', event.at, clock(event.at));
        } else if (event.state === 'cancelled') {
          cells.what = '⊘ cancelled';
          cells.took = event.sinceMs === null ? '' : duration(event.sinceMs);
          cells.detail = `${event.error === null ? '' : `reason: ${event.error}`}${parent ? ` — its end sent to its parent ${parent.id} as an event` : ''}`;
          cells.track = tick('cancel', event.at, clock(event.at));
        } else {
          cells.what = '✗ failed';
          cells.detail = `${event.error ?? ''}${parent ? ` — its end sent to its parent ${parent.id} as an event` : ''}`;
          cells.track = tick('failed', event.at, clock(event.at));
        }
        break;
      }
    }
    return h(
      'tr',
      { className, dataset: data },
      h('td', { className: 'when num' }, cells.when),
      h('td', { className: 'lane' }, h('div', { className: 'track' }, cells.track)),
      h('td', { className: 'what' }, cells.what),
      h('td', { className: 'token num' }, cells.token),
      h('td', { className: 'took num' }, cells.took),
      h('td', { className: 'detail' }, cells.detail),
    );
  });
  return h(
    'table',
    { className: 'timeline', id: 'timeline' },
    h('thead', {}, h('tr', {}, h('th', {}, 'at'), h('th', { className: 'lane' }, `${clock(timeline.from)} → ${timeOfDay(timeline.to)}`), h('th', {}, 'entry'), h('th', {}, 'token'), h('th', {}, 'took'), h('th', {}, ''))),
    h('tbody', {}, rows),
  );
}

// The page as it is before the first push.
if (workflowId !== null) app.replaceChildren(h('p', { className: 'muted' }, 'Loading workflow ', h('code', {}, workflowId), '…'));
connect();
