// The operator's page: the sessions, live from the change feed, and what can be done
// to them, all through the service's own HTTP API with the bearer token.
//
// Every value from the service is inserted as text (text nodes, textContent, or an
// attribute that is never a URL or a handler), never parsed as HTML.
'use strict';

const TOKEN_KEY = 'session-manager.token';
const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  sessions: new Map(),
  current: null,
  selected: null,
  lastEventId: null,
  feed: null, // the AbortController of the open feed
  personas: [],
};

// ---- DOM helpers

const $ = (id) => document.getElementById(id);

/** An element with attributes and children; a string child becomes a text node. */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false || child === '') continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

function say(node, text, bad) {
  node.textContent = text || '';
  node.classList.toggle('bad', Boolean(bad));
}

// ---- Formatting

function money(value) {
  if (typeof value !== 'number') return '—';
  return '$' + value.toFixed(value !== 0 && value < 0.1 ? 4 : 2);
}

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso ?? '—');
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function when(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? String(iso ?? '—') : new Date(t).toLocaleString();
}

function bytes(n) {
  if (typeof n !== 'number') return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

/** One argument as a POSIX shell reads it back. */
function shellQuote(arg) {
  const text = String(arg);
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
  return "'" + text.replace(/'/g, "'\\''") + "'";
}

function tagsOf(session) {
  return Array.isArray(session.tags) ? session.tags.map(String) : [];
}

function chips(list) {
  return list.map((text) => h('span', { class: 'chip', text }));
}

// ---- The API

class Problem extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

function headers(extra) {
  const all = { ...extra };
  if (state.token) all.Authorization = 'Bearer ' + state.token;
  return all;
}

/** A call of the API: the JSON answer, or a Problem with the answer's detail. */
async function api(method, path, body) {
  const init = { method, headers: headers(), credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (response.status === 401) askToken(state.token ? 'The token was refused.' : '');
  if (!response.ok) throw new Problem(response.status, detailOf(data, response), data);
  return data;
}

function detailOf(data, response) {
  return (data && typeof data.detail === 'string' && data.detail)
    || `${response.status} ${response.statusText}`;
}

/** Whether a problem says the service has no such route (yet). */
function missingRoute(problem) {
  return problem instanceof Problem && (problem.status === 405
    || (problem.status === 404 && /^no route for /.test(problem.message)));
}

// ---- The token

function askToken(why) {
  stopFeed();
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $('app').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  say($('login-error'), why || '');
  setFeed('signed out', false);
  $('token').focus();
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  start();
});

$('forget').addEventListener('click', () => askToken(''));

// ---- The change feed, read with fetch (an EventSource cannot send the token)

function setFeed(text, live) {
  const node = $('feed');
  node.textContent = text;
  node.classList.toggle('live', live);
}

function stopFeed() {
  if (state.feed) state.feed.abort();
  state.feed = null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follows `GET /events` for as long as `control` is not aborted, reconnecting. */
async function follow(control) {
  let delay = 1000;
  let first = true;
  while (!control.signal.aborted) {
    try {
      const extra = state.lastEventId ? { 'Last-Event-ID': state.lastEventId } : {};
      const response = await fetch('/events', {
        headers: headers(extra), credentials: 'omit', cache: 'no-store', signal: control.signal,
      });
      if (response.status === 401) { askToken('The token was refused.'); return; }
      if (!response.ok) throw new Error(`${response.status}`);
      // Subscribed: what is read now cannot miss a change the feed will not send.
      if (first || !state.lastEventId) await reload();
      first = false;
      setFeed('live', true);
      delay = 1000;
      await readEvents(response.body, dispatch);
    } catch (error) {
      if (control.signal.aborted) return;
    }
    setFeed('reconnecting…', false);
    await sleep(delay);
    delay = Math.min(delay * 2, 15000);
  }
}

/** Reads a text/event-stream body, calling `handle(type, data)` for each event. */
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { type: '', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (event.id !== null) state.lastEventId = event.id;
        if (event.data.length) handle(event.type || 'message', event.data.join('\n'));
        event = { type: '', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? '' : line.slice(colon + 1);
      if (text.startsWith(' ')) text = text.slice(1);
      if (field === 'event') event.type = text;
      else if (field === 'data') event.data.push(text);
      else if (field === 'id' && !text.includes('\0')) event.id = text;
    }
  }
}

function dispatch(type, text) {
  let data;
  try { data = JSON.parse(text); } catch { return; }
  if (type === 'resync') {
    reload().catch((problem) => notice(problem.message));
  } else if (reloads.pending) {
    reloads.pending.push([type, data]);
  } else if (apply(type, data)) {
    render();
    loadHealthSoon();
  }
}

/** Applies one event to the copy of the sessions; false when it changed nothing shown. */
function apply(type, data) {
  switch (type) {
    case 'session.switched':
      state.current = data.active ?? null;
      return true;
    case 'session.archived':
    case 'session.removed':
    case 'session.renamed': // the new name comes as session.created
      state.sessions.delete(data.name);
      if (data.name === state.selected) closePanel();
      if (type === 'session.archived') loadArchive();
      if (type === 'session.renamed' && data.name === state.current) reload().catch(() => {});
      return true;
    case 'archive.removed':
      loadArchive();
      return false;
    default:
      // session.created, .updated, .restored, .process_gone, .budget_exhausted,
      // persona.updated, and any later type that carries the session.
      if (!data.session || typeof data.session.name !== 'string') return false;
      state.sessions.set(data.session.name, data.session);
      if (data.session.name === state.selected) refreshPanel(type === 'persona.updated');
      if (type === 'session.restored') loadArchive();
      return true;
  }
}

// ---- Loading

// While the sessions are read again, the events that come are kept, and applied in order
// once the last read is in: each carries the whole session, so the copy converges.
const reloads = { running: 0, pending: null };

async function reload() {
  reloads.running++;
  reloads.pending = reloads.pending || [];
  try {
    const [list, active] = await Promise.all([api('GET', '/sessions'), api('GET', '/sessions/active')]);
    state.sessions = new Map(list.map((s) => [s.name, s]));
    state.current = active.active;
  } finally {
    // Every event since the first of these reads began, on whichever read came last.
    if (--reloads.running === 0) {
      for (const [type, data] of reloads.pending) apply(type, data);
      reloads.pending = null;
    }
    render();
  }
  if (state.selected && !state.sessions.has(state.selected)) closePanel();
  else if (state.selected) refreshPanel(true);
  loadHealth();
}

async function start() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('forget').hidden = !state.token;
  stopFeed();
  try {
    await api('GET', '/sessions/active');
  } catch (problem) {
    if (problem.status !== 401) notice(problem.message);
    return;
  }
  const control = new AbortController();
  state.feed = control;
  follow(control);
  loadPersonas();
  loadArchive();
}

function notice(text) {
  $('notice').hidden = !text;
  $('notice').textContent = text || '';
}

// ---- The sessions table

function render() {
  const sessions = [...state.sessions.values()].sort((a, b) =>
    (Date.parse(b.last_active) - Date.parse(a.last_active)) || (a.name < b.name ? -1 : 1));
  fill($('rows'), sessions.map(row));
  $('count').textContent = `(${sessions.length})`;
  $('empty').hidden = sessions.length > 0;
  if (state.selected) renderMeta();
}

function row(s) {
  const current = s.name === state.current;
  const budget = typeof s.budget_usd === 'number' ? s.budget_usd : null;
  const cost = s.usage ? s.usage.cost_usd : 0;
  const used = budget === null ? null : budget === 0 ? 1 : cost / budget;
  const cell = (label, cls, ...children) => h('td', { 'data-label': label, class: cls }, ...children);
  return h('tr', { 'data-name': s.name, class: [current && 'current', s.name === state.selected && 'selected'].filter(Boolean).join(' ') },
    cell(null, 'name',
      h('button', { type: 'button', class: 'link open', text: s.name, onclick: () => openPanel(s.name) }),
      current ? [' ', h('span', { class: 'chip current', text: 'current' })] : null),
    cell('Title', 'title', typeof s.title === 'string' ? s.title : ''),
    cell('Tags', 'tags', chips(tagsOf(s))),
    cell('Status', null, h('span', { class: 'status-' + s.status, text: String(s.status) })),
    cell('Process', null, h('span', { class: 'process-' + s.process, text: String(s.process ?? '—') })),
    cell('Persona', null, String(s.persona ?? 'default')),
    cell('Cost', 'num', s.usage ? money(cost) : '—'),
    cell('Budget', 'num', used === null ? '—' : [
      h('meter', { min: 0, max: 1, low: 0.75, high: 0.9, optimum: 0, value: Math.min(used, 1),
        title: `${money(cost)} of ${money(budget)}` }),
      ' ', Math.round(used * 100) + '%']),
    cell('Last active', 'num', h('span', { title: when(s.last_active), text: ago(s.last_active) })),
    cell(null, 'actions', current ? null
      : h('button', { type: 'button', class: 'switch', text: 'Switch', onclick: () => switchTo(s.name) })));
}

async function switchTo(name) {
  try {
    const answer = await api('PUT', '/sessions/active', { name });
    state.current = answer.active; // the feed says so too, a moment later
    render();
  } catch (problem) {
    notice(`Switch to ${name}: ${problem.message}`);
  }
}

// ---- The panel of one session

function openPanel(name) {
  state.selected = name;
  $('panel').hidden = false;
  say($('p-message'), '');
  $('p-archive').dataset.armed = '';
  $('p-archive').textContent = 'Archive';
  for (const id of ['p-persona', 'p-launch', 'p-transcript']) fill($(id), h('p', { class: 'muted', text: 'Loading…' }));
  render();
  refreshPanel(true);
  $('panel').scrollIntoView({ block: 'nearest' });
}

function closePanel() {
  state.selected = null;
  $('panel').hidden = true;
  render();
}

$('p-close').addEventListener('click', closePanel);
$('p-switch').addEventListener('click', () => switchTo(state.selected));

let panelTimer = null;
/** Reads the panel's parts again, at most once per burst of events. */
function refreshPanel(persona) {
  renderMeta();
  const s = state.sessions.get(state.selected);
  const edit = (input, value) => { if (s && document.activeElement !== input) input.value = value; };
  edit($('p-title-value'), s && typeof s.title === 'string' ? s.title : '');
  edit($('p-tags-value'), s ? tagsOf(s).join(', ') : '');
  if (persona) loadPersonaOf(state.selected);
  clearTimeout(panelTimer);
  panelTimer = setTimeout(() => { loadLaunch(state.selected); loadTranscript(state.selected); }, 150);
}

const KNOWN = ['name', 'title', 'tags', 'status', 'process', 'pid', 'persona', 'created',
  'last_active', 'idle_seconds', 'dir', 'conversation', 'conversations', 'usage', 'budget_usd'];

function renderMeta() {
  const s = state.sessions.get(state.selected);
  if (!s) return;
  $('p-name').textContent = s.name;
  $('p-switch').hidden = s.name === state.current;
  const u = s.usage;
  const pairs = [
    ['Status', `${s.status}${s.name === state.current ? ' (current)' : ''}`],
    ['Process', `${s.process ?? '—'}${s.pid ? ', pid ' + s.pid : ''}`],
    ['Persona', s.persona === null ? 'default (none was asked for)' : String(s.persona)],
    ['Created', when(s.created)],
    ['Last active', `${when(s.last_active)} (${ago(s.last_active)})`],
    ['Idle', typeof s.idle_seconds === 'number' ? `${s.idle_seconds} s` : '—'],
    ['Directory', String(s.dir ?? '—')],
    ['Cost', u ? `${money(u.cost_usd)} in ${u.turns} turns, ${u.input_tokens} in / ${u.output_tokens} out tokens` : '—'],
    ['Budget', typeof s.budget_usd === 'number' ? money(s.budget_usd) : 'none'],
  ];
  for (const [key, value] of Object.entries(s)) {
    if (!KNOWN.includes(key)) pairs.push([key, typeof value === 'string' ? value : JSON.stringify(value)]);
  }
  fill($('p-meta'), pairs.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
  renderConversations(s);
}

function renderConversations(s) {
  const list = Array.isArray(s.conversations) ? [...s.conversations].reverse() : [];
  if (!list.length) {
    fill($('p-conversations'), h('p', { class: 'muted', text: 'None reported yet.' }));
    return;
  }
  fill($('p-conversations'), h('ol', { class: 'plain small' }, list.map((c) => h('li', null,
    h('code', { text: String(c.id) }), c.id === s.conversation ? [' ', h('span', { class: 'chip', text: 'current' })] : null,
    h('div', { class: 'muted', text: [`started ${when(c.started)}`, c.model && `model ${c.model}`,
      c.parent && `forked from ${c.parent}`, c.ended && `ended ${JSON.stringify(c.ended)}`].filter(Boolean).join(' · ') })))));
}

/** Fills `node` with what `load` makes of an API answer, or the problem's detail. */
async function section(node, name, path, make) {
  try {
    const data = await api('GET', path);
    if (state.selected === name) fill(node, make(data));
  } catch (problem) {
    const text = missingRoute(problem) ? 'Not served by this version of the service.' : problem.message;
    if (state.selected === name) fill(node, h('p', { class: 'muted', text }));
  }
}

function loadPersonaOf(name) {
  section($('p-persona'), name, `/sessions/${encodeURIComponent(name)}/persona`, personaView);
}

function personaView(p) {
  const settings = p.settings || {};
  return [
    h('p', null, h('strong', { text: String(p.name) }), ' — ', String(p.description ?? '')),
    h('p', { class: 'muted small', text: `model ${settings.model ?? '—'}, at most ${settings.max_turns ?? '—'} turns` }),
    h('details', null, h('summary', { text: 'System prompt' }), h('pre', { text: String(p.system_prompt ?? '') })),
  ];
}

function loadLaunch(name) {
  if (!name) return;
  section($('p-launch'), name, `/sessions/${encodeURIComponent(name)}/launch`, (spec) => {
    const env = Object.entries(spec.env || {}).map(([k, v]) => `${k}=${shellQuote(v)} `).join('');
    const line = `cd ${shellQuote(spec.cwd)} && ${env}${(spec.argv || []).map(shellQuote).join(' ')}`;
    return [h('pre', { class: 'launch', text: line }),
      h('p', { class: 'muted small', text: `mode ${spec.mode}, conversation ${spec.conversation}` })];
  });
}

function loadTranscript(name) {
  if (!name) return;
  section($('p-transcript'), name, `/sessions/${encodeURIComponent(name)}/transcript?tail=10`, (t) => {
    const messages = Array.isArray(t.messages) ? t.messages : [];
    if (!messages.length) return h('p', { class: 'muted', text: 'No messages yet.' });
    return h('ul', { class: 'plain' }, messages.map((m) => h('li', null,
      h('span', { class: 'msg-role', text: String(m.role) }), ' ',
      h('span', { class: 'muted small', text: m.time ? when(m.time) : '' }),
      m.text ? h('pre', { text: String(m.text) }) : null,
      Array.isArray(m.tools) && m.tools.length ? h('div', { class: 'small' }, 'tools: ', chips(m.tools.map(String))) : null)));
  });
}

async function saveLabel(field, value) {
  const name = state.selected;
  try {
    const session = await api('PATCH', `/sessions/${encodeURIComponent(name)}`, { [field]: value });
    state.sessions.set(session.name, session);
    render();
    say($('p-message'), `Saved the ${field}.`);
  } catch (problem) {
    say($('p-message'), `The ${field} was not saved: ${problem.message}`, true);
  }
}

$('p-title').addEventListener('submit', (event) => {
  event.preventDefault();
  const title = $('p-title-value').value.trim();
  saveLabel('title', title || null);
});

$('p-tags').addEventListener('submit', (event) => {
  event.preventDefault();
  const tags = $('p-tags-value').value.split(',').map((t) => t.trim()).filter(Boolean);
  saveLabel('tags', tags.length ? tags : null);
});

// Archiving asks twice: the first click arms the button for a few seconds.
$('p-archive').addEventListener('click', async () => {
  const button = $('p-archive');
  const name = state.selected;
  if (button.dataset.armed !== name) {
    button.dataset.armed = name;
    button.textContent = 'Really archive?';
    setTimeout(() => { button.dataset.armed = ''; button.textContent = 'Archive'; }, 4000);
    return;
  }
  try {
    await api('DELETE', `/sessions/${encodeURIComponent(name)}`);
    state.sessions.delete(name);
    closePanel();
    loadArchive();
  } catch (problem) {
    say($('p-message'), `Not archived: ${problem.message}`, true);
  }
});

// ---- New session, personas, health, archive

$('new').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = $('new-name').value.trim();
  const persona = $('new-persona').value;
  try {
    const session = await api('POST', '/sessions', persona ? { name, persona } : { name });
    state.sessions.set(session.name, session);
    render();
    $('new-name').value = '';
    say($('new-message'), `Created ${session.name}.`);
  } catch (problem) {
    say($('new-message'), problem.message, true);
  }
});

async function loadPersonas() {
  try {
    state.personas = await api('GET', '/personas');
  } catch (problem) {
    fill($('persona-list'), h('p', { class: 'error', text: problem.message }));
    return;
  }
  fill($('new-persona'), h('option', { value: '', text: 'default' }),
    state.personas.filter((p) => p.key !== 'default').map((p) => h('option', { value: p.key, text: p.key })));
  fill($('persona-list'), h('ul', { class: 'plain' }, state.personas.map((p) => h('li', null,
    h('strong', { text: String(p.key) }), ' ', h('span', { class: 'muted', text: String(p.name) }),
    h('div', { class: 'small', text: String(p.description ?? '') }),
    h('div', { class: 'muted small', text: `${p.settings?.model ?? '—'}, ${p.settings?.max_turns ?? '—'} turns` })))));
}

let healthTimer = null;
function loadHealthSoon() {
  if (!healthTimer) healthTimer = setTimeout(() => { healthTimer = null; loadHealth(); }, 300);
}

async function loadHealth() {
  const body = $('health-body');
  let health;
  try {
    health = await api('GET', '/healthz');
  } catch (problem) {
    fill(body, h('p', { class: 'error', text: `Unhealthy: ${problem.message}` }));
    return;
  }
  const counts = health.sessions || {};
  const storage = health.storage;
  const items = [
    ['Status', h('strong', { class: health.status === 'ok' ? 'status-active' : 'error', text: String(health.status) })],
    ['Version', String(health.version)],
    ['Sessions', `${counts.total ?? '—'}: ${counts.active ?? 0} active, ${counts.suspended ?? 0} suspended, ${counts.idle ?? 0} idle`],
    ['Personas', String(health.personas ?? '—')],
    ['Disk', storage ? [h('meter', { min: 0, max: 1, low: 0.9, high: 0.99, optimum: 0,
      value: 1 - storage.free_bytes / Math.max(storage.total_bytes, 1) }),
    ` ${bytes(storage.free_bytes)} free of ${bytes(storage.total_bytes)}`] : '—'],
  ];
  const list = (title, entries) => (entries.length ? [h('h3', { text: title }),
    h('ul', { class: 'plain small' }, entries.map((e) => h('li', { text: e })))] : null);
  fill(body, h('dl', null, items.map(([k, v]) => [h('dt', { text: k }), h('dd', null, v)])),
    list('Problems', (health.problems || []).map(String)),
    list('Skipped entries', (health.skipped || []).map((s) => `${s.path}: ${s.reason}`)));
}

async function loadArchive() {
  let entries;
  try {
    entries = await api('GET', '/archive');
  } catch (problem) {
    // A service without the archive's routes: the section stays hidden.
    $('archive').hidden = missingRoute(problem);
    if (!missingRoute(problem)) say($('archive-message'), problem.message, true);
    return;
  }
  $('archive').hidden = false;
  const list = Array.isArray(entries) ? entries : [];
  fill($('archive-list'), list.length ? list.map(archived)
    : h('li', { class: 'muted', text: 'Nothing archived.' }));
}

function archived(entry) {
  return h('li', { 'data-name': String(entry.name) },
    h('strong', { text: String(entry.name) }), ' ',
    h('span', { class: 'muted small', text: `archived ${when(entry.archived)}, ${bytes(entry.size_bytes)}` }),
    entry.problem ? h('div', { class: 'error small', text: String(entry.problem) }) : null,
    h('div', null, h('button', { type: 'button', text: 'Restore', onclick: () => restore(entry) })));
}

async function restore(entry) {
  try {
    await api('POST', `/archive/${encodeURIComponent(entry.id)}/restore`, {});
    say($('archive-message'), `Restored ${entry.name}.`);
    loadArchive();
  } catch (problem) {
    say($('archive-message'), `${entry.name} was not restored: ${problem.message}`, true);
  }
}

// The relative times stay true without events.
setInterval(() => { if (!$('app').hidden) render(); }, 30000);

start();
