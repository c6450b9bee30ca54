// stoke's web console: a page per route (#/signin, #/functions, #/functions/<name>) drawn from the /v1 API.
// The API key lives in this tab's session storage and travels only as a bearer token. Every value from the
// server is put on the page as text (textContent), never parsed as HTML.
'use strict';

const KEY = 'stoke.apiKey';
const main = document.getElementById('main');
let stopLive = () => {};
// Each route draws one page; a page whose requests come back after the user has moved on draws nothing.
let page = 0;
// A sentence for the sign-in page the next time it is drawn (why the user is there).
let notice = '';

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API with the signed-in key; a 401 signs out. */
async function api(method, path, body, key = sessionStorage.getItem(KEY)) {
  const headers = { Authorization: 'Bearer ' + key };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : body });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = text;
  }
  if (!response.ok) {
    const e = data && data.error ? data.error : {};
    throw new ApiError(response.status, e.code || String(response.status), e.message || text || response.statusText);
  }
  return { data, headers: response.headers };
}

/** A paragraph saying what went wrong; a refused key signs out (once the caller has drawn its page). */
function failed(e) {
  if (e instanceof ApiError && e.status === 401) {
    setTimeout(() => signOut('Your key was refused: sign in again.'), 0);
  }
  return el('p', { class: 'error', role: 'alert', text: e.message });
}

function signOut(message) {
  stopLive();
  sessionStorage.removeItem(KEY);
  notice = message || '';
  if (location.hash === '#/signin') route();
  else location.hash = '#/signin';
}

function signInPage(message) {
  const input = el('input', { type: 'password', id: 'api-key', autocomplete: 'off', required: true });
  const note = el('p', { id: 'sign-in-error', class: 'error', role: 'alert', text: message || '' });
  const form = el('form', { class: 'signin', id: 'sign-in-form' },
    el('h1', { text: 'Sign in' }),
    el('label', { for: 'api-key', text: 'API key' }),
    input,
    el('p', { class: 'muted', text: 'The key stays in this tab (session storage) and is sent only to this server.' }),
    el('button', { type: 'submit', id: 'sign-in' }, 'Sign in'),
    note);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    try {
      await api('GET', '/v1/account', undefined, key);
      sessionStorage.setItem(KEY, key);
      if (location.hash === '#/functions') route();
      else location.hash = '#/functions';
    } catch (e) {
      note.textContent = e instanceof ApiError && e.status === 401 ? 'That key is not valid.' : e.message;
    }
  });
  show(form);
  input.focus();
}

async function who() {
  try {
    const { data } = await api('GET', '/v1/account');
    document.getElementById('who').textContent = (data.name || data.id || '') + (data.is_admin ? ' (admin)' : '');
  } catch (_) { /* the page itself reports errors */ }
}

function when(text) {
  if (!text) return '';
  const d = new Date(text);
  return isNaN(d) ? String(text) : d.toLocaleString();
}

async function functionsPage(alive) {
  const search = el('input', { type: 'search', id: 'search', placeholder: 'Filter by name, runtime or state', 'aria-label': 'Filter functions' });
  const body = el('tbody');
  const table = el('table', { id: 'functions' },
    el('thead', {}, el('tr', {}, ['Name', 'State', 'Runtime', 'Memory', 'Versions', 'Modified'].map((h) => el('th', { scope: 'col', text: h })))),
    body);
  const status = el('p', { class: 'muted', id: 'functions-status', role: 'status' });
  const more = el('button', { type: 'button', class: 'plain', id: 'more', hidden: true }, 'Load more');
  let all = [];
  let cursor = null;
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = all.filter((f) => !q || [f.name, f.runtime, f.state].some((v) => String(v || '').toLowerCase().includes(q)));
    body.replaceChildren(...rows.map((f) => el('tr', { 'data-function': f.name },
      el('td', { class: 'name' }, el('a', { href: '#/functions/' + encodeURIComponent(f.name), text: f.name })),
      el('td', { text: f.state }),
      el('td', { text: f.runtime || (f.image ? 'image' : '') }),
      el('td', { text: f.memory_mb + ' MB' }),
      el('td', { text: f.last_version ? String(f.last_version) : '—' }),
      el('td', { text: when(f.modified) }))));
    status.textContent = rows.length + ' of ' + all.length + ' function' + (all.length === 1 ? '' : 's') + (cursor ? ' (more to load)' : '');
    more.hidden = !cursor;
  };
  const load = async () => {
    const { data } = await api('GET', '/v1/functions?limit=100' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    all = all.concat(data.functions || []);
    cursor = data.next_cursor || null;
    draw();
  };
  search.addEventListener('input', draw);
  more.addEventListener('click', () => load().catch((e) => status.replaceWith(failed(e))));
  show(el('h1', { text: 'Functions' }), el('div', { class: 'row' }, search), status, table, more);
  try {
    await load();
  } catch (e) {
    if (alive()) show(el('h1', { text: 'Functions' }), failed(e));
  }
}

/** Follows a function's log lines: the recent ones, then each as it is written, read as server-sent events
 * through fetch (so that the key goes in a header, not the URL). Returns a function that stops it. */
function followLogs(name, pre) {
  const controller = new AbortController();
  const seen = new Set();
  let since = 0; // the first answer holds the recent lines
  const add = (line) => {
    const id = line.at_ms + ' ' + line.instance + ' ' + line.text;
    if (seen.has(id)) return;
    seen.add(id);
    since = Math.max(since, line.at_ms);
    const at = new Date(line.at_ms).toISOString().slice(11, 23);
    pre.append(el('span', { class: 'line', text: at + '  ' + line.text + '\n' }));
    pre.scrollTop = pre.scrollHeight;
  };
  const path = '/v1/functions/' + encodeURIComponent(name) + '/logs/stream?since_ms=';
  (async () => {
    while (!controller.signal.aborted) {
      const response = await fetch(path + since, {
        headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY) },
        signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new ApiError(response.status, '', 'The live logs answered ' + response.status + '.');
      pre.dataset.live = 'true';
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const row of event.split('\n')) {
            if (row.startsWith('data: ')) add(JSON.parse(row.slice(6)));
          }
        }
      }
      // The server ended the stream (it is shutting down): try again shortly.
      pre.dataset.live = 'false';
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })().catch((e) => {
    if (!controller.signal.aborted) pre.after(failed(e));
  });
  return () => controller.abort();
}

function config(f) {
  const rows = [
    ['Description', f.description],
    ['State', f.state],
    ['Runtime', f.runtime || (f.image ? 'image ' + f.image : '')],
    ['Handler', f.handler],
    ['Memory', f.memory_mb + ' MB'],
    ['Timeout', f.timeout_s + ' s'],
    ['Versions', f.last_version ? String(f.last_version) : 'none published'],
    ['Code', f.code_size + ' bytes, sha256 ' + f.code_sha256],
    ['ARN', f.arn],
    ['Modified', when(f.modified)],
  ];
  return el('dl', { id: 'config' }, rows.filter(([, v]) => v !== undefined && v !== '').flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
}

/** What a page shows, from `path`; `null` when the page was left meanwhile, or when the request failed
 * (the page then says why, under `title`). */
async function fetchPage(path, title, alive) {
  try {
    const { data } = await api('GET', path);
    return alive() ? data : null;
  } catch (e) {
    if (alive()) show(el('h1', { text: title }), failed(e));
    return null;
  }
}

async function functionPage(name, alive) {
  const f = await fetchPage('/v1/functions/' + encodeURIComponent(name), name, alive);
  if (!f) return;
  const event = el('textarea', { id: 'event', 'aria-label': 'Event (JSON)', spellcheck: 'false' });
  event.value = '{}';
  const result = el('pre', { id: 'result', 'aria-live': 'polite' });
  const report = el('pre', { id: 'report', class: 'muted' });
  const invoke = el('button', { type: 'button', id: 'invoke' }, 'Invoke');
  invoke.addEventListener('click', async () => {
    let body;
    try {
      body = JSON.stringify(JSON.parse(event.value));
    } catch (e) {
      result.textContent = 'The event is not JSON: ' + e.message;
      result.className = 'error';
      return;
    }
    invoke.disabled = true;
    result.textContent = 'Running…';
    result.className = '';
    try {
      const { data, headers } = await api('POST', '/v1/functions/' + encodeURIComponent(name) + '/invoke', body);
      const error = headers.get('x-stoke-function-error');
      result.textContent = typeof data === 'string' ? data : JSON.stringify(data, null, 2);
      result.className = error ? 'error' : 'ok';
      const h = (n) => headers.get('x-stoke-' + n);
      const parts = ['RequestId: ' + h('request-id'), 'Duration: ' + h('duration-ms') + ' ms',
        'Billed Duration: ' + h('billed-duration-ms') + ' ms', 'Max Memory Used: ' + h('max-memory-used-mb') + ' MB'];
      if (h('init-duration-ms')) parts.push('Init Duration: ' + h('init-duration-ms') + ' ms (cold start)');
      if (error) parts.push('Error: ' + error);
      report.textContent = 'REPORT ' + parts.join('\t');
    } catch (e) {
      result.textContent = e.message;
      result.className = 'error';
    } finally {
      invoke.disabled = false;
    }
  });
  const logs = el('pre', { id: 'logs', class: 'logs', 'aria-live': 'polite', 'aria-label': 'Live logs' });
  show(
    el('p', {}, el('a', { href: '#/functions', text: '← Functions' })),
    el('h1', { id: 'function-name', text: f.name }),
    config(f),
    el('h2', { text: 'Invoke' }),
    event,
    el('div', { class: 'row' }, invoke),
    result,
    report,
    el('h2', { text: 'Live logs' }),
    logs);
  stopLive = followLogs(name, logs);
}

async function workflowsPage(alive) {
  const body = el('tbody');
  show(el('h1', { text: 'Workflows' }),
    el('table', { id: 'workflows' },
      el('thead', {}, el('tr', {}, ['Name', 'States', 'Pre-warming', 'Updated'].map((h) => el('th', { scope: 'col', text: h })))),
      body));
  try {
    const { data } = await api('GET', '/v1/workflows');
    if (!alive()) return;
    const list = data.workflows || [];
    body.replaceChildren(...list.map((w) => el('tr', { 'data-workflow': w.name },
      el('td', { class: 'name' }, el('a', { href: '#/workflows/' + encodeURIComponent(w.name), text: w.name })),
      el('td', { text: String(Object.keys((w.definition && w.definition.States) || {}).length) }),
      el('td', { text: w.prewarm || 'server default' }),
      el('td', { text: when(w.updated_at) }))));
    if (!list.length) main.append(el('p', { class: 'muted', text: 'No workflows yet: stoke wf create NAME definition.json' }));
  } catch (e) {
    if (alive()) main.append(failed(e));
  }
}

/** The states of a definition as nested lists: each state's type and where it goes; Parallel branches and
 * Map item processors inside their state. */
function stateTree(machine) {
  const list = el('ul', { class: 'states' });
  for (const [name, st] of Object.entries((machine && machine.States) || {})) {
    const goes = [];
    if (st.Next) goes.push('→ ' + st.Next);
    for (const c of st.Choices || []) goes.push('? → ' + c.Next);
    if (st.Default) goes.push('default → ' + st.Default);
    for (const c of st.Catch || []) goes.push('catch → ' + c.Next);
    if (st.End || ['Succeed', 'Fail'].includes(st.Type)) goes.push('end');
    const item = el('li', { 'data-state': name },
      el('span', { class: 'state-name', text: name }), ' ',
      el('span', { class: 'muted', text: st.Type + (name === machine.StartAt ? ', start' : '') + '  ' + goes.join('  ') }));
    for (const b of st.Branches || []) item.append(stateTree(b));
    if (st.ItemProcessor || st.Iterator) item.append(stateTree(st.ItemProcessor || st.Iterator));
    list.append(item);
  }
  return list;
}

async function workflowPage(name, alive) {
  const w = await fetchPage('/v1/workflows/' + encodeURIComponent(name), name, alive);
  if (!w) return;
  const body = el('tbody');
  const input = el('textarea', { id: 'execution-input', 'aria-label': 'Execution input (JSON)', spellcheck: 'false' });
  input.value = '{}';
  const note = el('p', { id: 'start-error', class: 'error', role: 'alert' });
  const start = el('button', { type: 'button', id: 'start' }, 'Start an execution');
  start.addEventListener('click', async () => {
    let body;
    try {
      body = JSON.stringify({ input: JSON.parse(input.value) });
    } catch (e) {
      note.textContent = 'The input is not JSON: ' + e.message;
      return;
    }
    try {
      const { data } = await api('POST', '/v1/workflows/' + encodeURIComponent(name) + '/executions', body);
      location.hash = '#/executions/' + encodeURIComponent(data.id);
    } catch (e) {
      note.textContent = e.message;
    }
  });
  show(
    el('p', {}, el('a', { href: '#/workflows', text: '← Workflows' })),
    el('h1', { id: 'workflow-name', text: w.name }),
    el('h2', { text: 'States' }),
    stateTree(w.definition),
    el('h2', { text: 'Start' }),
    input, el('div', { class: 'row' }, start), note,
    el('h2', { text: 'Executions' }),
    el('table', { id: 'executions' },
      el('thead', {}, el('tr', {}, ['Execution', 'Status', 'Started', 'Stopped'].map((h) => el('th', { scope: 'col', text: h })))),
      body));
  try {
    const { data } = await api('GET', '/v1/workflows/' + encodeURIComponent(name) + '/executions');
    if (!alive()) return;
    body.replaceChildren(...(data.executions || []).map((x) => el('tr', { 'data-execution': x.id },
      el('td', { class: 'name' }, el('a', { href: '#/executions/' + encodeURIComponent(x.id), text: x.name })),
      el('td', { class: 'status-' + x.status.toLowerCase(), text: x.status }),
      el('td', { text: when(x.started_at) }),
      el('td', { text: when(x.stopped_at) }))));
  } catch (e) {
    if (alive()) main.append(failed(e));
  }
}

const PHASES = ['queued', 'sandbox', 'init', 'held', 'waiting', 'running'];
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** The execution's timeline as a Gantt chart: one row per step in the order they were entered, bars
 * coloured by phase, a mark on the steps that paid a cold start. */
function gantt(t, status) {
  const steps = t.steps || [];
  const label = 220;
  const width = 900;
  const rowH = 26;
  const span = Math.max(t.duration_ms || 0, 1);
  const x = (ms) => label + (Math.max(0, ms) / span) * (width - label - 10);
  const chart = svg('svg', { id: 'timeline', role: 'img', width, height: steps.length * rowH + 30,
    viewBox: '0 0 ' + width + ' ' + (steps.length * rowH + 30), 'aria-label': 'Timeline of the execution' });
  steps.forEach((s, i) => {
    const y = i * rowH + 4;
    const done = s.exited_ms !== undefined && s.exited_ms !== null;
    const state = done ? 'succeeded' : (status === 'RUNNING' ? 'running' : 'failed');
    const row = svg('g', { class: 'step step-' + state, 'data-state': s.state, 'data-scope': s.scope,
      'data-status': state, 'data-cold': s.cold_starts > 0 ? 'true' : 'false' });
    const name = (s.scope ? s.scope + ' ' : '') + s.state;
    row.append(svg('text', { x: 4, y: y + 16, class: 'step-label' }, name.length > 30 ? name.slice(0, 29) + '…' : name));
    const end = done ? s.exited_ms : t.duration_ms;
    row.append(svg('rect', { x: x(s.entered_ms), y: y + 3, width: Math.max(1, x(end) - x(s.entered_ms)), height: rowH - 8, class: 'span' }));
    for (const seg of s.segments || []) {
      const w = Math.max(1, x(seg.end_ms) - x(seg.start_ms));
      row.append(svg('rect', { x: x(seg.start_ms), y: y + 3, width: w, height: rowH - 8, class: 'phase-' + seg.phase, 'data-phase': seg.phase },
        svg('title', {}, seg.phase + ' ' + (seg.end_ms - seg.start_ms).toFixed(1) + ' ms')));
    }
    if (s.cold_starts > 0) {
      row.append(svg('text', { x: x(s.entered_ms) - 14, y: y + 16, class: 'cold-mark' }, '❄',
        svg('title', {}, s.cold_starts + ' cold start' + (s.cold_starts === 1 ? '' : 's'))));
    }
    chart.append(row);
  });
  const legend = el('p', { class: 'legend' }, PHASES.map((p) => el('span', { class: 'key phase-' + p, text: p })),
    el('span', { class: 'key', text: '❄ cold start' }));
  return el('div', {}, chart, legend);
}

async function executionPage(id, alive) {
  const head = el('div');
  const chart = el('div', { id: 'chart' });
  const io = el('div');
  show(el('p', {}, el('a', { href: '#/workflows', text: '← Workflows' })), head, el('h2', { text: 'Timeline' }), chart, io);
  let timer = null;
  const draw = async () => {
    let x;
    let t;
    try {
      [{ data: x }, { data: t }] = await Promise.all([
        api('GET', '/v1/executions/' + encodeURIComponent(id)),
        api('GET', '/v1/executions/' + encodeURIComponent(id) + '/timeline'),
      ]);
    } catch (e) {
      if (alive()) head.replaceChildren(el('h1', { text: id }), failed(e));
      return;
    }
    // A page left while its requests were out stops here: no drawing, no next round.
    if (!alive()) return;
    head.replaceChildren(
      el('h1', { id: 'execution-name', text: x.name }),
      el('dl', { id: 'execution' },
        el('dt', { text: 'Workflow' }), el('dd', {}, el('a', { href: '#/workflows/' + encodeURIComponent(x.workflow), text: x.workflow })),
        el('dt', { text: 'Status' }), el('dd', { id: 'execution-status', class: 'status-' + x.status.toLowerCase(), text: x.status }),
        el('dt', { text: 'Started' }), el('dd', { text: when(x.started_at) }),
        el('dt', { text: 'Duration' }), el('dd', { text: (t.duration_ms / 1000).toFixed(3) + ' s' }),
        el('dt', { text: 'Cold starts' }), el('dd', { id: 'cold-starts', text: String(t.cold_starts) }),
        el('dt', { text: 'Bill' }), el('dd', { text: t.bill ? t.bill.invocations + ' invocations, ' + t.bill.billed_ms +
          ' ms billed, ' + Number(t.bill.gb_seconds).toFixed(4) + ' GB-s, ' + Number(t.bill.cost).toFixed(8) : '' })));
    chart.replaceChildren(gantt(t, x.status));
    chart.dataset.steps = JSON.stringify((t.steps || []).map((s) => [s.scope, s.state, s.cold_starts]));
    const parts = [el('h2', { text: 'Input' }), el('pre', { id: 'execution-input', text: JSON.stringify(x.input, null, 2) })];
    if (x.output !== undefined) parts.push(el('h2', { text: 'Output' }), el('pre', { id: 'execution-output', text: JSON.stringify(x.output, null, 2) }));
    if (x.error) parts.push(el('h2', { text: 'Error' }), el('pre', { class: 'error', text: x.error + ': ' + (x.cause || '') }));
    io.replaceChildren(...parts);
    // Live while it runs.
    if (x.status === 'RUNNING') timer = setTimeout(draw, 500);
  };
  stopLive = () => clearTimeout(timer);
  await draw();
}

async function route() {
  stopLive();
  stopLive = () => {};
  const mine = ++page;
  const alive = () => mine === page;
  const key = sessionStorage.getItem(KEY);
  const hash = location.hash || '#/functions';
  if (!key || hash === '#/signin') {
    document.getElementById('nav').hidden = true;
    signInPage(notice);
    notice = '';
    return;
  }
  document.getElementById('nav').hidden = false;
  who();
  const parts = hash.slice(2).split('/');
  const arg = parts.length === 2 && parts[1] ? decodeURIComponent(parts[1]) : null;
  if (parts[0] === 'functions' && arg) await functionPage(arg, alive);
  else if (parts[0] === 'workflows' && arg) await workflowPage(arg, alive);
  else if (parts[0] === 'workflows') await workflowsPage(alive);
  else if (parts[0] === 'executions' && arg) await executionPage(arg, alive);
  else await functionsPage(alive);
  if (alive()) main.focus();
}

document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', route);
route();
