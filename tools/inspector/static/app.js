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
/** A message from the last action (retry), kept across pushes. */
let actionMessage = null;

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
    document.getElementById('footer').textContent = `Live: the server pushes every change to this page (Server-Sent Events); the page never polls. ${config.allowActions ? 'Actions are on (--allow-actions).' : 'Read-only: start with --allow-actions to retry failed workflows here.'}`;
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

function render(kind, data) {
  lastKind = kind;
  lastData = data;
  const scroll = window.scrollY;
  app.replaceChildren(kind === 'list' ? listPage(data) : workflowPage(data));
  window.scrollTo(0, scroll);
}

// ── the list ─────────────────────────────────────────────────────────────────

function filterForm(filter) {
  const statusSelect = h(
    'select',
    { name: 'status', id: 'filter-status' },
    ['', 'running', 'completed', 'failed'].map((s) => h('option', { value: s, selected: (filter.status || '') === s ? 'selected' : null }, s || 'any status')),
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
      { dataset: { workflowId: w.id, status: w.status, state: w.state } },
      h('td', { className: 'id' }, h('a', { href: workflowHref(w.id) }, w.id)),
      h('td', {}, w.name),
      h('td', {}, badge(w.status)),
      h('td', { className: `where ${w.state}` }, whereItIs(w)),
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
      h('thead', {}, h('tr', {}, ['id', 'name', 'status', 'where it is', 'steps', 'token', 'created', 'last change', 'error'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 9, className: 'muted' }, 'no workflows match'))),
    ),
  );
}

// ── one workflow ─────────────────────────────────────────────────────────────

function leaseText(data) {
  const w = data.workflow;
  if (w.status !== 'running') return '— (finished: nobody holds it)';
  if (data.waiting) return `waiting for its ${data.waiting.reason === 'retry' ? 'retry (a back-off)' : 'sleep'} to end at ${clock(data.waiting.until)} — in ${duration(data.waiting.inMs)}; held by nobody`;
  if (w.leaseOwner && w.leaseMsLeft > 0) return `held by ${w.leaseOwner} · fencing token ${w.fencingToken} · ${duration(w.leaseMsLeft)} left`;
  if (w.fencingToken === 0) return 'runnable: never claimed yet';
  return `runnable: nobody holds it (last held by ${w.leaseOwner ?? 'nobody'}, token ${w.fencingToken}) — the next claim takes it`;
}

function deadlineText(w) {
  if (w.deadlineInMs === null) return 'none';
  return w.deadlineInMs >= 0 ? `in ${duration(w.deadlineInMs)} (${clock(w.deadlineAt)})` : `passed ${duration(-w.deadlineInMs)} ago (${clock(w.deadlineAt)})`;
}

function retryButton(w) {
  if (!config.allowActions || w.status !== 'failed') return null;
  return h(
    'button',
    {
      className: 'action',
      id: 'retry',
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          const response = await fetch(`/api/workflows/${encodeURIComponent(w.id)}/retry`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
          const body = await response.json();
          actionMessage = { ok: response.ok, text: body.message || body.error || `HTTP ${response.status}` };
        } catch (error) {
          actionMessage = { ok: false, text: String(error) };
        }
        render(lastKind, lastData);
      },
    },
    'Retry this workflow',
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
    h('div', { className: 'actions' }, retryButton(w), message),
    facts,
    h(
      'div',
      { className: 'io' },
      h('div', {}, h('h2', {}, 'Input'), h('pre', { id: 'input' }, pretty(w.input))),
      w.status === 'completed' ? h('div', {}, h('h2', {}, 'Output'), h('pre', { id: 'output' }, pretty(w.output))) : null,
      w.status === 'failed' ? h('div', {}, h('h2', {}, 'Error'), h('pre', { id: 'error', className: 'error' }, w.error)) : null,
    ),
    h('h2', {}, 'Timeline'),
    h('p', { className: 'muted' }, 'What the log recorded, in order, and what it implies between the records: which claim (fencing token) recorded each entry, where a run went to wait, where one run stopped and another took over. Times are the database’s; a step’s start is not recorded — its duration is measured from the previous record of the same run (≈: a claim’s latency included).'),
    timelineTable(data.timeline, data.dbNow),
  );
}

// ── the timeline ─────────────────────────────────────────────────────────────

function timelineTable(timeline, now) {
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
      case 'wait': {
        data.reason = event.reason;
        className += ` ${event.reason}${event.current ? ' current' : ''}`;
        cells.when = offset(event.from);
        cells.what = `‖ ${event.reason === 'retry' ? 'back-off before the next attempt' : 'asleep'} — ${duration(event.ms)}`;
        cells.took = duration(event.ms);
        cells.detail = `released: held by nobody, no worker slot used, until ${clock(event.until)}${event.current ? ` — now, ${duration(new Date(event.until).getTime() - new Date(now).getTime())} to go` : ''}`;
        cells.track = bar(`wait ${event.reason}`, event.from, event.until, `${clock(event.from)} → ${clock(event.until)}`);
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
          cells.detail = `held by ${event.owner} (token ${event.token}), lease ${duration(event.leaseMsLeft)} left`;
          cells.took = event.sinceMs === null ? '' : `${duration(event.sinceMs)} so far`;
          if (event.startedAt) cells.track = bar('run current', event.startedAt, event.at, 'running now');
        } else if (event.state === 'runnable') {
          cells.what = '… runnable';
          cells.detail = event.token === 0 ? 'waiting for a worker to claim it' : `nobody holds it: the next claim takes it (token ${event.token + 1})`;
        } else if (event.state === 'waiting') {
          cells.what = '‖ waiting now';
          cells.detail = 'released until its wait ends (above); then any worker claims it';
          cells.token = '';
        } else if (event.state === 'completed') {
          cells.what = '✓ completed';
          cells.took = event.sinceMs === null ? '' : duration(event.sinceMs);
          cells.detail = 'the output is recorded (above)';
          cells.track = tick('done', event.at, clock(event.at));
        } else {
          cells.what = '✗ failed';
          cells.detail = event.error ?? '';
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
