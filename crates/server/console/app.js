// stoke's web console: a page per route (#/signin, #/functions[/<name>], #/workflows[/<name>], #/executions/<id>,
// #/durable/<id>, #/tunes/<id>, #/node) drawn from the /v1 API.
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

/** A table with its column headings and its body rows. */
function table(id, headings, body) {
  return el('table', { id }, el('thead', {}, el('tr', {}, headings.map((h) => el('th', { scope: 'col', text: h })))), body);
}

/** Replaces the page's content: nodes, or lists of them; `null` and `undefined` are nothing. */
function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
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

/** "2 of 40 (5 %)": a function's errors among its invocations on this node. */
function errorRate(a) {
  if (!a || !a.invocations) return '—';
  return a.errors + ' of ' + a.invocations + ' (' + Math.round((100 * a.errors) / a.invocations) + ' %)';
}

async function functionsPage(alive) {
  const search = el('input', { type: 'search', id: 'search', placeholder: 'Filter by name, runtime or state', 'aria-label': 'Filter functions' });
  const body = el('tbody');
  const list = table('functions', ['Name', 'State', 'Runtime', 'Memory', 'Versions', 'Last invoked', 'Errors', 'Modified'], body);
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
      el('td', { class: 'last-invoked', text: f.activity && f.activity.invocations ? when(new Date(f.activity.last_invoked_ms)) : '—' }),
      el('td', { class: 'errors' + (f.activity && f.activity.errors ? ' error' : ''), text: errorRate(f.activity) }),
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
  show(el('h1', { text: 'Functions' }), el('div', { class: 'row' }, search), status, list, more);
  try {
    await load();
  } catch (e) {
    if (alive()) show(el('h1', { text: 'Functions' }), failed(e));
  }
}

/** Follows a function's log lines: the recent ones, then each as it is written, read as server-sent events
 * through fetch (so that the key goes in a header, not the URL). Returns a function that stops it. */
function followLogs(name, pre, also = () => {}) {
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
    also(line);
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
    ['On this node', f.activity && f.activity.invocations ? errorRate(f.activity).replace(/^(\d+) of (\d+)/, '$2 invocations, $1 failed') +
      ', the last ' + when(new Date(f.activity.last_invoked_ms)) : 'not invoked since the node started'],
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
  const releases = el('div', { id: 'releases' });
  const recent = el('div', { id: 'recent' });
  const durable = el('div', { id: 'durable-executions' });
  show(
    el('p', {}, el('a', { href: '#/functions', text: '← Functions' })),
    el('h1', { id: 'function-name', text: f.name }),
    functionActions(f),
    config(f),
    f.last_tune ? el('p', {}, 'Last tune: ', el('a', { href: '#/tunes/' + encodeURIComponent(f.last_tune.id), id: 'last-tune',
      text: f.last_tune.state + (f.last_tune.recommendation ? ', ' + f.last_tune.recommendation.summary : '') })) : null,
    el('h2', { text: 'Invoke' }),
    event,
    el('div', { class: 'row' }, invoke),
    result,
    report,
    f.durable ? [el('h2', { text: 'Durable executions' }), durable] : null,
    el('h2', { text: 'Live logs' }),
    logs,
    el('h2', { text: 'Recent invocations' }),
    recent,
    el('h2', { text: 'Versions and aliases' }),
    releases);
  stopLive = followLogs(name, logs, (line) => recentInvocation(recent, line));
  drawReleases(name, releases, alive);
  if (f.durable) drawDurableExecutions(name, durable, alive);
}

/** A durable function's newest executions, each a link to its page. */
async function drawDurableExecutions(name, box, alive) {
  let list;
  try {
    ({ data: list } = await api('GET', '/v1/functions/' + encodeURIComponent(name) + '/durable-executions?limit=1000'));
  } catch (e) {
    if (alive()) box.replaceChildren(failed(e));
    return;
  }
  if (!alive()) return;
  const newest = (list.executions || []).slice(-50).reverse();
  const body = el('tbody', {}, newest.map((x) => el('tr', { 'data-id': x.id },
    el('td', { class: 'name' }, el('a', { href: '#/durable/' + encodeURIComponent(x.id), text: x.name })),
    el('td', { class: 'status-' + x.status.toLowerCase(), text: x.status }),
    el('td', { text: when(x.started_at) }),
    el('td', { text: x.ended_at ? when(x.ended_at) : '' }))));
  box.replaceChildren(newest.length ? table('durable-list', ['Execution', 'Status', 'Started', 'Ended'], body)
    : el('p', { class: 'muted', text: 'No executions yet: invoking the function starts one.' }));
}

/** The function's lifecycle actions its state allows: publish a version, block or unblock it. */
function functionActions(f) {
  const note = el('p', { id: 'action-note', role: 'status', class: 'muted' });
  const act = (label, id, method, path) => {
    const b = el('button', { type: 'button', class: 'plain', id }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await api(method, '/v1/functions/' + encodeURIComponent(f.name) + path, '{}');
        route();
      } catch (e) {
        note.replaceChildren(failed(e));
        b.disabled = false;
      }
    });
    return b;
  };
  const allowed = new Set(f.allowed_actions || []);
  return el('div', {},
    el('div', { class: 'row' },
      allowed.has('publish') ? act('Publish a version', 'publish', 'POST', '/versions') : null,
      allowed.has('block') ? act('Block', 'block', 'POST', '/block') : null,
      allowed.has('unblock') ? act('Unblock', 'unblock', 'POST', '/unblock') : null),
    note);
}

/** Versions, and aliases with a form to move each (or make a new one) to a version. */
async function drawReleases(name, box, alive) {
  const base = '/v1/functions/' + encodeURIComponent(name);
  let versions;
  let aliases;
  try {
    [{ data: versions }, { data: aliases }] = await Promise.all([api('GET', base + '/versions?limit=100'), api('GET', base + '/aliases')]);
  } catch (e) {
    if (alive()) box.replaceChildren(failed(e));
    return;
  }
  if (!alive()) return;
  const numbers = (versions.versions || []).map((v) => String(v.version)).reverse();
  const note = el('p', { id: 'alias-note', class: 'error', role: 'alert' });
  const picker = (current, label) => el('select', { 'aria-label': label },
    ['$LATEST', ...numbers].map((v) => el('option', { value: v, selected: v === current }, v)));
  const move = async (alias, select, button) => {
    button.disabled = true;
    try {
      await api('PUT', base + '/aliases/' + encodeURIComponent(alias), JSON.stringify({ version: select.value }));
      if (alive()) drawReleases(name, box, alive);
    } catch (e) {
      note.textContent = e.message;
      button.disabled = false;
    }
  };
  const aliasRows = (aliases.aliases || []).map((a) => {
    const select = picker(a.version, 'Version for ' + a.name);
    const button = el('button', { type: 'button', class: 'plain' }, 'Move');
    button.addEventListener('click', () => move(a.name, select, button));
    return el('tr', { 'data-alias': a.name, 'data-version': a.version },
      el('td', { class: 'name', text: a.name }),
      el('td', { text: a.version + (a.additional_version ? ' (+' + a.additional_version + ' at ' + a.additional_weight + ')' : '') }),
      el('td', {}, el('div', { class: 'row' }, select, button)));
  });
  const newName = el('input', { type: 'text', id: 'alias-name', placeholder: 'alias name', 'aria-label': 'New alias name' });
  const newVersion = picker(numbers[0] || '$LATEST', 'Version for the new alias');
  const create = el('button', { type: 'button', id: 'alias-create', class: 'plain' }, 'Create alias');
  create.addEventListener('click', () => {
    if (!newName.value.trim()) {
      note.textContent = 'Give the alias a name (letters, digits, - or _).';
      return;
    }
    move(newName.value.trim(), newVersion, create);
  });
  box.replaceChildren(
    table('versions', ['Version', 'Description', 'Code', 'Published'],
      el('tbody', {}, (versions.versions || []).map((v) => el('tr', { 'data-version': String(v.version) },
        el('td', { text: String(v.version) }), el('td', { text: v.description || '' }),
        el('td', { text: String(v.code_sha256 || '').slice(0, 12) }), el('td', { text: when(v.created) }))))),
    numbers.length ? null : el('p', { class: 'muted', text: 'No version published yet.' }),
    table('aliases', ['Alias', 'Version', 'Move to'],
      el('tbody', {}, aliasRows)),
    el('div', { class: 'row' }, newName, newVersion, create),
    note);
}

/** A REPORT line becomes a row of the recent invocations (newest first, the last 20). */
function recentInvocation(box, line) {
  if (!line.text.startsWith('REPORT RequestId: ')) return;
  const fields = {};
  for (const part of line.text.slice(7).split('\t')) {
    const at = part.indexOf(': ');
    if (at > 0) fields[part.slice(0, at)] = part.slice(at + 2);
  }
  let body = box.querySelector('tbody');
  if (!body) {
    body = el('tbody');
    box.replaceChildren(table('invocations', ['At', 'Request', 'Duration', 'Memory used', 'Cold start'],
      body));
  }
  body.prepend(el('tr', { 'data-request': fields.RequestId || '' },
    el('td', { text: new Date(line.at_ms).toLocaleTimeString() }),
    el('td', { class: 'name', text: fields.RequestId || '' }),
    el('td', { text: fields.Duration || '' }),
    el('td', { text: fields['Max Memory Used'] || '' }),
    el('td', { text: fields['Init Duration'] ? '❄ ' + fields['Init Duration'] : '' })));
  while (body.rows.length > 20) body.deleteRow(-1);
}

async function workflowsPage(alive) {
  const body = el('tbody');
  show(el('h1', { text: 'Workflows' }),
    table('workflows', ['Name', 'States', 'Pre-warming', 'Updated'],
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

// The state machine as a graph: states in rows by their distance from StartAt, arrows for Next, Choice
// branches (dashed), Default and Catch (red); a Parallel's branches and a Map's item processor drawn inside
// their state's box. Each state's box is a <g data-state data-status> the execution page colours.
const NODE_W = 150;
const NODE_H = 34;
const GAP_X = 26;
const GAP_Y = 34;
const PAD = 12;
const HEAD = 24;

function transitions(st, states) {
  const out = [];
  if (st.Next) out.push([st.Next, 'next']);
  for (const c of st.Choices || []) out.push([c.Next, 'choice']);
  if (st.Default) out.push([st.Default, 'default']);
  for (const c of st.Catch || []) out.push([c.Next, 'catch']);
  return out.filter(([n]) => Object.prototype.hasOwnProperty.call(states, n));
}

function layout(machine) {
  const states = (machine && machine.States) || {};
  const names = Object.keys(states);
  const depth = {};
  const order = [];
  if (machine && Object.prototype.hasOwnProperty.call(states, machine.StartAt)) {
    depth[machine.StartAt] = 0;
    const queue = [machine.StartAt];
    while (queue.length) {
      const n = queue.shift();
      order.push(n);
      for (const [m] of transitions(states[n], states)) {
        if (!(m in depth)) {
          depth[m] = depth[n] + 1;
          queue.push(m);
        }
      }
    }
  }
  let deepest = order.length ? Math.max(...order.map((n) => depth[n])) : -1;
  for (const n of names) {
    if (!(n in depth)) {
      depth[n] = ++deepest;
      order.push(n);
    }
  }
  const size = {};
  const inner = {};
  for (const n of names) {
    const st = states[n];
    const processor = st.ItemProcessor || st.Iterator;
    const subs = st.Branches || (processor ? [processor] : null);
    if (subs && subs.length) {
      inner[n] = subs.map(layout);
      const w = inner[n].reduce((a, l) => a + l.w, 0) + GAP_X * (inner[n].length - 1) + 2 * PAD;
      size[n] = { w: Math.max(NODE_W, w), h: HEAD + Math.max(...inner[n].map((l) => l.h)) + PAD };
    } else {
      size[n] = { w: NODE_W, h: NODE_H };
    }
  }
  const rows = [];
  for (const n of order) (rows[depth[n]] = rows[depth[n]] || []).push(n);
  const widths = rows.map((r) => r.reduce((a, n) => a + size[n].w, 0) + GAP_X * (r.length - 1));
  const w = Math.max(NODE_W, ...widths);
  const pos = {};
  let y = 0;
  rows.forEach((r, i) => {
    let x = (w - widths[i]) / 2;
    for (const n of r) {
      pos[n] = { x, y, w: size[n].w, h: size[n].h };
      x += size[n].w + GAP_X;
    }
    y += Math.max(...r.map((n) => size[n].h)) + GAP_Y;
  });
  const edges = [];
  for (const n of names) for (const [m, kind] of transitions(states[n], states)) edges.push([n, m, kind]);
  return { w, h: Math.max(0, y - GAP_Y), pos, inner, edges, states, start: machine && machine.StartAt };
}

function drawLayout(l, ox, oy, into, nodes) {
  for (const [a, b, kind] of l.edges) {
    const p = l.pos[a];
    const q = l.pos[b];
    let d;
    if (q.y > p.y) {
      d = 'M' + (ox + p.x + p.w / 2) + ',' + (oy + p.y + p.h) + ' L' + (ox + q.x + q.w / 2) + ',' + (oy + q.y - 2);
    } else {
      // Back to an earlier row (a loop): around the right-hand side.
      const right = ox + Math.max(p.x + p.w, q.x + q.w) + 22;
      d = 'M' + (ox + p.x + p.w) + ',' + (oy + p.y + p.h / 2) + ' C' + right + ',' + (oy + p.y + p.h / 2) + ' ' +
        right + ',' + (oy + q.y + q.h / 2) + ' ' + (ox + q.x + q.w + 2) + ',' + (oy + q.y + q.h / 2);
    }
    into.append(svg('path', { d, class: 'edge edge-' + kind, 'marker-end': 'url(#arrow)' }));
  }
  for (const [n, p] of Object.entries(l.pos)) {
    const st = l.states[n];
    const node = svg('g', { class: 'node' + (l.inner[n] ? ' nested' : ''), 'data-state': n, 'data-type': st.Type, 'data-status': 'idle' });
    node.append(svg('rect', { x: ox + p.x, y: oy + p.y, width: p.w, height: p.h, rx: 6 }));
    const label = n.length > 20 ? n.slice(0, 19) + '…' : n;
    node.append(svg('text', { x: ox + p.x + p.w / 2, y: oy + p.y + (l.inner[n] ? 16 : p.h / 2 + 4), 'text-anchor': 'middle' },
      label, svg('title', {}, n + ' — ' + st.Type + (n === l.start ? ', start' : ''))));
    into.append(node);
    (nodes[n] = nodes[n] || []).push(node);
    if (l.inner[n]) {
      const total = l.inner[n].reduce((a, s) => a + s.w, 0) + GAP_X * (l.inner[n].length - 1);
      let x = ox + p.x + (p.w - total) / 2;
      for (const sub of l.inner[n]) {
        drawLayout(sub, x, oy + p.y + HEAD, into, nodes);
        x += sub.w + GAP_X;
      }
    }
  }
}

/** The graph of `machine`; `nodes` maps each state's name to its boxes (for statuses). */
function machineGraph(machine) {
  const l = layout(machine);
  const width = l.w + 60;
  const height = l.h + 20;
  const chart = svg('svg', { id: 'graph', role: 'img', width, height, viewBox: '-10 -6 ' + width + ' ' + height,
    'aria-label': 'The state machine as a graph' });
  chart.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto' },
    svg('path', { d: 'M0,0 L10,5 L0,10 z' }))));
  const nodes = {};
  drawLayout(l, 0, 0, chart, nodes);
  const legend = el('p', { class: 'legend' },
    el('span', { class: 'key next', text: '→ next' }), el('span', { class: 'key choice', text: '⇢ choice' }),
    el('span', { class: 'key catch', text: '→ catch' }));
  return { element: el('div', { id: 'graph-box' }, chart, legend), nodes };
}

/** Colours each state's box by what the timeline says of it: running, succeeded, failed (idle when not
 * entered). A state entered several times (a Map's iterations, a loop) is running while any entry runs. */
function paintStatuses(nodes, steps, executionStatus) {
  const of = {};
  for (const s of steps) {
    const done = s.exited_ms !== undefined && s.exited_ms !== null;
    const now = done ? 'succeeded' : (executionStatus === 'RUNNING' ? 'running' : 'failed');
    const before = of[s.state];
    of[s.state] = before === 'running' || now === 'running' ? 'running' : (before === 'failed' || now === 'failed' ? 'failed' : 'succeeded');
  }
  for (const [name, boxes] of Object.entries(nodes)) {
    for (const b of boxes) b.setAttribute('data-status', of[name] || 'idle');
  }
}

async function workflowPage(name, alive) {
  const w = await fetchPage('/v1/workflows/' + encodeURIComponent(name), name, alive);
  if (!w) return;
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
  const list = executionList(name, alive);
  show(
    el('p', {}, el('a', { href: '#/workflows', text: '← Workflows' })),
    el('h1', { id: 'workflow-name', text: w.name }),
    el('h2', { text: 'Graph' }),
    machineGraph(w.definition).element,
    el('details', {}, el('summary', { text: 'States as a list' }), stateTree(w.definition)),
    el('h2', { text: 'Start' }),
    input, el('div', { class: 'row' }, start), note,
    el('h2', { text: 'Executions' }),
    list.element);
  await list.load();
}

/** A workflow's executions, newest first, 50 at a time, filtered by status on the server. */
function executionList(name, alive) {
  const body = el('tbody');
  const filter = el('select', { id: 'status-filter', 'aria-label': 'Show executions that are' },
    ['', 'RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'].map((v) => el('option', { value: v }, v || 'any status')));
  const more = el('button', { type: 'button', class: 'plain', id: 'more-executions', hidden: true }, 'Load more');
  const status = el('p', { class: 'muted', id: 'executions-status', role: 'status' });
  let last = null;
  let shown = 0;
  const load = async (fresh) => {
    if (fresh) {
      body.replaceChildren();
      last = null;
      shown = 0;
    }
    const query = '?limit=50' + (filter.value ? '&status=' + filter.value : '') + (last ? '&before=' + encodeURIComponent(last) : '');
    try {
      const { data } = await api('GET', '/v1/workflows/' + encodeURIComponent(name) + '/executions' + query);
      if (!alive()) return;
      const page = data.executions || [];
      body.append(...page.map((x) => el('tr', { 'data-execution': x.id },
        el('td', { class: 'name' }, el('a', { href: '#/executions/' + encodeURIComponent(x.id), text: x.name })),
        el('td', { class: 'status-' + x.status.toLowerCase(), text: x.status }),
        el('td', { text: when(x.started_at) }),
        el('td', { text: when(x.stopped_at) }))));
      shown += page.length;
      last = page.length ? page[page.length - 1].id : last;
      more.hidden = page.length < 50;
      status.textContent = shown + ' execution' + (shown === 1 ? '' : 's') + ' shown' + (more.hidden ? '' : ' (more to load)');
    } catch (e) {
      if (alive()) status.replaceChildren(failed(e));
    }
  };
  filter.addEventListener('change', () => load(true));
  more.addEventListener('click', () => load(false));
  const element = el('div', {}, el('div', { class: 'row' }, filter), status,
    table('executions', ['Execution', 'Status', 'Started', 'Stopped'],
      body),
    more);
  return { element, load: () => load(true) };
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
  const graphBox = el('div');
  const io = el('div');
  const events = el('tbody');
  const historyBox = el('details', { id: 'history-box' }, el('summary', { text: 'History (the execution\'s events)' }),
    table('history', ['#', 'At', 'Event', 'Where', 'Details'],
      events));
  const loadHistory = async () => {
    try {
      const { data } = await api('GET', '/v1/executions/' + encodeURIComponent(id) + '/history');
      if (!alive()) return;
      events.replaceChildren(...(data.events || []).map((e) => {
        const details = JSON.stringify(e.details);
        return el('tr', { 'data-event': e.type },
          el('td', { text: String(e.id) }), el('td', { text: e.timestamp.slice(11, 23) }), el('td', { text: e.type }),
          el('td', { text: e.scope || '' }), el('td', { class: 'details', text: details.length > 300 ? details.slice(0, 299) + '…' : details }));
      }));
    } catch (e) {
      if (alive()) events.replaceChildren(el('tr', {}, el('td', { colspan: 5 }, failed(e))));
    }
  };
  historyBox.addEventListener('toggle', () => {
    if (historyBox.open) loadHistory();
  });
  show(el('p', {}, el('a', { href: '#/workflows', text: '← Workflows' })), head, el('h2', { text: 'Timeline' }), chart,
    el('h2', { text: 'Graph' }), graphBox, io, historyBox);
  let timer = null;
  let graph = null;
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
        t.prewarm_saved_ms > 0 ? [el('dt', { text: 'Pre-warming saved' }), el('dd', { id: 'prewarm-saved',
          text: t.prewarm_saved_ms.toFixed(1) + ' ms of cold starts, started before their steps asked (with pre-warming off, each step would have waited for its instance)' })] : null,
        el('dt', { text: 'Bill' }), el('dd', { text: t.bill ? t.bill.invocations + ' invocations, ' + t.bill.billed_ms +
          ' ms billed, ' + Number(t.bill.gb_seconds).toFixed(4) + ' GB-s, ' + Number(t.bill.cost).toFixed(8) : '' })));
    chart.replaceChildren(gantt(t, x.status));
    if (!graph) {
      try {
        const { data: w } = await api('GET', '/v1/workflows/' + encodeURIComponent(x.workflow));
        if (!alive()) return;
        graph = machineGraph(w.definition);
        graphBox.replaceChildren(graph.element);
      } catch (e) {
        graph = { nodes: {} };
        graphBox.replaceChildren(failed(e));
      }
    }
    paintStatuses(graph.nodes, t.steps || [], x.status);
    chart.dataset.steps = JSON.stringify((t.steps || []).map((s) => [s.scope, s.state, s.cold_starts]));
    const parts = [el('h2', { text: 'Input' }), el('pre', { id: 'execution-input', text: JSON.stringify(x.input, null, 2) })];
    if (x.output !== undefined) parts.push(el('h2', { text: 'Output' }), el('pre', { id: 'execution-output', text: JSON.stringify(x.output, null, 2) }));
    if (x.error) parts.push(el('h2', { text: 'Error' }), el('pre', { class: 'error', text: x.error + ': ' + (x.cause || '') }));
    io.replaceChildren(...parts);
    if (historyBox.open) loadHistory();
    // Live while it runs.
    if (x.status === 'RUNNING') timer = setTimeout(draw, 500);
  };
  stopLive = () => clearTimeout(timer);
  await draw();
}

/** A bar chart of the tune's warm duration per size, with its cost per invocation as a line over it. */
function tuneChart(t) {
  const sizes = (t.sizes || []).filter((r) => r.warm_ms !== null && r.warm_ms !== undefined);
  const width = 720;
  const height = 260;
  const left = 60;
  const bottom = 40;
  const chart = svg('svg', { id: 'tune-chart', role: 'img', width, height, viewBox: '0 0 ' + width + ' ' + height,
    'aria-label': 'Warm duration and cost against memory' });
  if (!sizes.length) return chart;
  const maxMs = Math.max(...sizes.map((r) => r.warm_ms));
  const costs = sizes.map((r) => r.cost || 0);
  const maxCost = Math.max(...costs) || 1;
  const slot = (width - left - 60) / sizes.length;
  const y = (v, max) => 10 + (height - bottom - 10) * (1 - v / max);
  chart.append(svg('text', { x: 4, y: 14, class: 'axis' }, Math.round(maxMs) + ' ms'));
  chart.append(svg('text', { x: width - 56, y: 14, class: 'axis cost' }, maxCost.toExponential(2)));
  let line = '';
  sizes.forEach((r, i) => {
    const x = left + i * slot;
    const top = y(r.warm_ms, maxMs);
    const best = t.recommendation && t.recommendation.memory_mb === r.memory_mb;
    chart.append(svg('rect', { x: x + slot * 0.2, y: top, width: slot * 0.6, height: height - bottom - top,
      class: 'bar' + (best ? ' best' : ''), 'data-memory': r.memory_mb },
      svg('title', {}, r.memory_mb + ' MB: ' + r.warm_ms.toFixed(1) + ' ms warm, cost ' + (r.cost || 0).toExponential(3))));
    chart.append(svg('text', { x: x + slot / 2, y: height - bottom + 16, 'text-anchor': 'middle', class: 'axis' }, r.memory_mb + ' MB'));
    line += (i ? ' L' : 'M') + (x + slot / 2) + ',' + y(costs[i], maxCost);
  });
  chart.append(svg('path', { d: line, class: 'cost-line' }));
  return chart;
}

async function tunePage(id, alive) {
  const box = el('div');
  show(box);
  let timer = null;
  stopLive = () => clearTimeout(timer);
  const draw = async () => {
    const t = await fetchPage('/v1/tunes/' + encodeURIComponent(id), 'Tune ' + id, alive);
    if (!t) return;
    const num = (v, digits) => (v === null || v === undefined ? '—' : Number(v).toFixed(digits));
    const rows = (t.sizes || []).map((r) => el('tr', { 'data-memory': String(r.memory_mb) },
      el('td', { text: r.memory_mb + ' MB' }),
      el('td', { text: num(r.warm_ms, 1) }), el('td', { text: num(r.warm_p90_ms, 1) }),
      el('td', { text: num(r.cold_ms, 1) }), el('td', { text: num(r.init_ms, 1) }),
      el('td', { text: r.peak_mb + ' MB' }),
      el('td', { text: r.cost === null || r.cost === undefined ? '—' : Number(r.cost).toExponential(3) }),
      el('td', { class: r.error ? 'error' : '', text: r.out_of_memory ? 'out of memory' : (r.error || 'ok') })));
    const rec = t.recommendation;
    box.replaceChildren(
      el('p', {}, el('a', { href: '#/functions/' + encodeURIComponent(t.function), text: '← ' + t.function })),
      el('h1', { id: 'tune-id', text: 'Tune of ' + t.function }),
      el('dl', { id: 'tune' },
        el('dt', { text: 'State' }), el('dd', { id: 'tune-state', text: t.state + ' (' + t.progress.done + ' of ' + t.progress.total + ' runs)' }),
        el('dt', { text: 'Tested' }), el('dd', { text: t.reference }),
        el('dt', { text: 'Recommendation' }), el('dd', { id: 'recommendation', text: rec ? rec.summary : (t.error ? t.error.message : '—') }),
        el('dt', { text: 'CPU follows memory' }), el('dd', { text: t.cpu_follows_memory ? 'yes' : 'no: every size may use any idle CPU' }),
        t.skipped && t.skipped.length ? [el('dt', { text: 'Not tested' }), el('dd', { text: t.skipped.join(', ') + ' MB (larger sizes stopped helping)' })] : null),
      el('h2', { text: 'Duration and cost by memory' }),
      el('div', { id: 'chart' }, tuneChart(t)),
      el('p', { class: 'legend' }, el('span', { class: 'key bar-key', text: 'warm duration (ms, left)' }),
        el('span', { class: 'key cost-key', text: 'cost per invocation (right)' }), el('span', { class: 'key best-key', text: 'recommended' })),
      table('sizes', ['Memory', 'Warm ms', 'p90 ms', 'Cold ms', 'Init ms', 'Peak', 'Cost', 'Result'],
      el('tbody', {}, rows)));
    if (t.state === 'running') timer = setTimeout(draw, 1000);
  };
  await draw();
}

/** A line chart of one series of the node's history (`null` values leave gaps). */
function lineChart(id, title, points, series, unit) {
  const width = 340;
  const height = 150;
  const chart = svg('svg', { id, role: 'img', width, height, viewBox: '0 0 ' + width + ' ' + height, 'aria-label': title, class: 'spark' });
  const values = points.flatMap((p) => series.map(([key]) => p[key])).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...values);
  // The whole hour, ending with the last slot: a node that started a minute ago draws at the right.
  const t1 = points.length ? points[points.length - 1].end_ms : 0;
  const span = 3600 * 1000;
  const t0 = t1 - span;
  const x = (p) => 40 + (width - 50) * ((p.end_ms - t0) / span);
  const y = (v) => 10 + (height - 35) * (1 - v / max);
  chart.append(svg('text', { x: 2, y: 14, class: 'axis' }, (max >= 10 ? Math.round(max) : max.toPrecision(2)) + unit));
  chart.append(svg('text', { x: 2, y: height - 18, class: 'axis' }, '0'));
  chart.append(svg('line', { x1: 40, y1: height - 25, x2: width - 10, y2: height - 25, class: 'baseline' }));
  for (const [key, cls] of series) {
    let d = '';
    let pen = false;
    for (const p of points) {
      const v = p[key];
      if (v === null || v === undefined) {
        pen = false;
        continue;
      }
      d += (pen ? ' L' : ' M') + x(p).toFixed(1) + ',' + y(v).toFixed(1);
      pen = true;
    }
    chart.append(svg('path', { d: d.trim() || 'M0,0', class: 'series ' + cls, 'data-series': key }));
    // A point with no neighbour draws no line: a dot shows it.
    points.forEach((p, i) => {
      const lone = (i === 0 || points[i - 1][key] == null) && (i === points.length - 1 || points[i + 1][key] == null);
      if (p[key] != null && lone) chart.append(svg('circle', { cx: x(p).toFixed(1), cy: y(p[key]).toFixed(1), r: 2.5, class: 'dot ' + cls }));
    });
  }
  if (points.length) {
    chart.append(svg('text', { x: 40, y: height - 6, class: 'axis' }, new Date(t0).toLocaleTimeString()));
    chart.append(svg('text', { x: width - 10, y: height - 6, 'text-anchor': 'end', class: 'axis' }, new Date(t1).toLocaleTimeString()));
  }
  return el('figure', {}, chart, el('figcaption', { text: title }));
}

async function nodePage(alive) {
  const box = el('div');
  show(el('h1', { text: 'Node' }), box);
  let timer = null;
  stopLive = () => clearTimeout(timer);
  const draw = async () => {
    let node;
    let instances;
    let history = null;
    try {
      [{ data: node }, { data: instances }] = await Promise.all([api('GET', '/v1/node'), api('GET', '/v1/instances')]);
      if (node.status) ({ data: history } = await api('GET', '/v1/node/history'));
    } catch (e) {
      if (alive()) box.replaceChildren(failed(e));
      return;
    }
    if (!alive()) return;
    const counts = {};
    for (const i of instances.instances || []) counts[i.state] = (counts[i.state] || 0) + 1;
    const generic = Object.entries(instances.generic || {}).reduce((a, [, n]) => a + n, 0);
    const cards = [['idle', counts.idle || 0], ['busy', counts.busy || 0], ['frozen', counts.frozen || 0],
      ['reserved', counts.reserved || 0], ['starting', (counts.starting || 0) + (counts.initializing || 0)],
      ['generic', generic], ['zygotes', instances.zygotes || 0]];
    const parts = [
      el('p', { class: 'muted', text: 'Sandbox ' + instances.sandbox + ', region ' + node.region + ', stoke ' + node.version +
        '; functions may use up to ' + node.limits.max_memory_mb + ' MB each.' +
        ((instances.snapshots || []).length ? ' VMs restored from snapshots: ' + instances.snapshots.join(', ') + '.' : '') }),
      el('h2', { text: 'Instances' + (node.status ? '' : ' of this account') }),
      el('div', { class: 'cards', id: 'instance-states' }, cards.map(([k, v]) => el('div', { class: 'card', 'data-state': k },
        el('span', { class: 'count', text: String(v) }), el('span', { class: 'muted', text: k })))),
    ];
    if (node.status) {
      const st = node.status;
      const last = history.points.length ? history.points[history.points.length - 1] : null;
      parts.push(
        el('h2', { text: 'Memory and queues' }),
        el('dl', { id: 'node-status' },
          el('dt', { text: 'Memory' }), el('dd', { text: st.charged_mb + ' MB charged, ' + st.configured_mb + ' MB configured' +
            (st.used_mb !== null && st.used_mb !== undefined ? ', ' + st.used_mb + ' MB in use' : '') + ' of a ' + st.memory_budget_mb + ' MB budget' }),
          el('dt', { text: 'Queued' }), el('dd', { id: 'queued', text: last ? String(last.queued) : '0' }),
          el('dt', { text: 'Cold starts' }), el('dd', { id: 'node-cold-starts', text: String(st.cold_starts) + ' since the node started' }),
          el('dt', { text: 'Evictions' }), el('dd', { text: Object.entries(st.evictions || {}).map(([k, v]) => k + ' ' + v).join(', ') })),
        el('h2', { text: 'The last hour' }),
        history.points.length ? el('div', { class: 'charts' },
          lineChart('chart-rate', 'Invocations per second', history.points, [['invocations_per_s', 'rate']], '/s'),
          lineChart('chart-latency', 'Duration p50 and p99', history.points, [['p50_ms', 'p50'], ['p99_ms', 'p99']], ' ms'),
          lineChart('chart-cold', 'Cold starts per ' + history.slot_s + ' s', history.points, [['cold_starts', 'cold']], ''))
          : el('p', { class: 'muted', id: 'no-history', text: 'The node counts in ' + history.slot_s + ' s slots: the first one has not ended yet.' }));
    } else {
      parts.push(el('p', { class: 'muted', id: 'admin-only', text: 'The node\'s memory, queues and charts count every account: sign in with an admin key to see them.' }));
    }
    box.replaceChildren(...parts);
    timer = setTimeout(draw, 10000);
  };
  await draw();
}

/** A durable execution: where it stands, its timeline (each invocation, cold or warm, and each operation) drawn as
 * a workflow's, its input and result or error; redrawn every second while it runs. */
async function durablePage(id, alive) {
  const head = el('div');
  const chart = el('div', { id: 'chart' });
  const io = el('div');
  show(head, el('h2', { text: 'Timeline' }), chart, io);
  const draw = async () => {
    let x;
    let t;
    try {
      [{ data: x }, { data: t }] = await Promise.all([
        api('GET', '/v1/durable-executions/' + encodeURIComponent(id)),
        api('GET', '/v1/durable-executions/' + encodeURIComponent(id) + '/timeline'),
      ]);
    } catch (e) {
      if (alive()) head.replaceChildren(el('h1', { text: id }), failed(e));
      return;
    }
    if (!alive()) return;
    head.replaceChildren(
      el('p', {}, el('a', { href: '#/functions/' + encodeURIComponent(x.function), text: '← ' + x.function })),
      el('h1', { id: 'durable-name', text: x.name }),
      el('dl', { id: 'durable-execution' },
        el('dt', { text: 'Function' }), el('dd', { text: x.function + ':' + x.version }),
        el('dt', { text: 'Status' }), el('dd', { id: 'durable-status', class: 'status-' + x.status.toLowerCase(), text: x.status }),
        el('dt', { text: 'Started' }), el('dd', { text: when(x.started_at) }),
        el('dt', { text: 'Duration' }), el('dd', { text: (t.duration_ms / 1000).toFixed(3) + ' s' }),
        el('dt', { text: 'Cold starts' }), el('dd', { id: 'durable-cold-starts', text: String(t.cold_starts) }),
        t.prewarm_saved_ms > 0 ? [el('dt', { text: 'Pre-warming saved' }), el('dd', { id: 'durable-prewarm-saved',
          text: t.prewarm_saved_ms.toFixed(1) + ' ms of cold starts: instances started before the resumes asked' })] : null,
        el('dt', { text: 'Bill' }), el('dd', { text: t.bill.invocations + ' invocations, ' + t.bill.billed_ms +
          ' ms billed, ' + Number(t.bill.gb_seconds).toFixed(4) + ' GB-s, ' + Number(t.bill.cost).toFixed(8) }),
        x.expires_at ? [el('dt', { text: 'Deleted at' }), el('dd', { text: when(x.expires_at) })] : null,
        el('dt', { text: 'ARN' }), el('dd', { text: x.arn })));
    chart.replaceChildren(gantt(t, x.status));
    const parts = [el('h2', { text: 'Input' }), el('pre', { id: 'durable-input', text: x.input || '' })];
    if (x.result !== undefined) parts.push(el('h2', { text: 'Result' }), el('pre', { id: 'durable-result', text: x.result }));
    if (x.error) parts.push(el('h2', { text: 'Error' }), el('pre', { class: 'error', text: JSON.stringify(x.error) }));
    io.replaceChildren(...parts);
    if (x.status === 'RUNNING') {
      const timer = setTimeout(draw, 1000);
      stopLive = () => clearTimeout(timer);
    }
  };
  await draw();
}

async function route() {
  stopLive();
  stopLive = () => {};
  const began = performance.now();
  delete main.dataset.route;
  delete main.dataset.drawnMs;
  delete main.dataset.drawnAtMs;
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
  else if (parts[0] === 'durable' && arg) await durablePage(arg, alive);
  else if (parts[0] === 'tunes' && arg) await tunePage(arg, alive);
  else if (parts[0] === 'node') await nodePage(alive);
  else await functionsPage(alive);
  if (alive()) {
    // How long the page took from its route to drawn (its first data included), for anyone measuring.
    main.dataset.drawnMs = (performance.now() - began).toFixed(1);
    main.dataset.drawnAtMs = performance.now().toFixed(1);
    main.dataset.route = hash;
    main.focus();
  }
}

document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', route);
route();
