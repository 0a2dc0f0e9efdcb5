// The Access Tokens page: everything it does is a call of the REST API
// (docs/http.md), with the session cookie and, for changes, the CSRF
// token from GET /ui/session. No framework, no build step; data reaches
// the page only through textContent, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { user: null, csrf: '', admin: false, tab: 'personal', skew: 0 };

// The server's clock, not this machine's: expiry is the server's call.
const now = () => Date.now() + state.skew;

class ApiError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = state.csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  if (r.status !== 204) {
    try { data = await r.json(); } catch (e) { data = null; }
  }
  if (!r.ok) {
    const err = data && data.error ? data.error : {};
    if (r.status === 401) signedOut();
    throw new ApiError(r.status, err.reason || '', err.message || `HTTP ${r.status}`);
  }
  return data;
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function say(text) { $('status').textContent = text; }

// ---------------------------------------------------------------- times

// A past event (created, last used, an activity entry) is never shown as
// "in a moment": the server's clock and ours agree only to within the
// round trip that measured the skew.
function relative(iso, past) {
  let ms = new Date(iso).getTime() - now();
  if (past && ms > 0) ms = 0;
  const s = Math.abs(ms) / 1000;
  const units = [[86400 * 365, 'year'], [86400, 'day'], [3600, 'hour'], [60, 'minute']];
  for (const [per, unit] of units) {
    if (s >= per) {
      const n = Math.round(s / per);
      const w = `${n} ${unit}${n === 1 ? '' : 's'}`;
      return ms > 0 ? `in ${w}` : `${w} ago`;
    }
  }
  return ms > 0 ? 'in a moment' : 'just now';
}

// A time: relative on the page, exact in the reader's time zone on hover
// and on focus (it takes the keyboard's focus too).
function timeEl(iso, never, past) {
  if (!iso) return el('span', { class: 'never', text: never || 'Never' });
  const exact = new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'long' });
  return el('time', { datetime: iso, title: exact, tabindex: '0', 'aria-label': exact, text: relative(iso, past) });
}

// ---------------------------------------------------------------- the list

const STATUS = { active: 'Active', revoked: 'Revoked', expired: 'Expired' };

async function whyStopped(t) {
  // R21: which of the three reasons applies, in words.
  if (t.user && t.user.active === false)
    return 'Its user is deactivated: it works again only once the user is activated.';
  if (t.status === 'expired')
    return `It expired ${relative(t.expiration, true)}: a token stops by itself at its expiration, and an expired one never returns. Generate a new one.`;
  if (t.status === 'revoked') {
    let events = [];
    try { events = (await api('GET', `/api/user-tokens/${t.id}/activity?limit=100`)).events; } catch (e) { /* shown without details */ }
    const ev = events.find((e) => e.kind === 'revoked');
    if (ev && ev.actor === 'leak_report')
      return `Revoked ${relative(ev.time, true)} because it was reported as leaked${ev.client_ip ? ` (from ${ev.client_ip})` : ''}. Generate a new one.`;
    if (ev) return `Revoked ${relative(ev.time, true)} by ${ev.actor}. Restore it if that was a mistake.`;
    return 'Revoked. Restore it if that was a mistake.';
  }
  return '';
}

async function listAll(path) {
  let out = [];
  let page = '';
  do {
    const sep = path.includes('?') ? '&' : '?';
    const r = await api('GET', `${path}${sep}page_size=500${page ? `&page_token=${encodeURIComponent(page)}` : ''}`);
    out = out.concat(r.tokens);
    page = r.next_page_token;
  } while (page);
  return out;
}

async function load() {
  const service = state.tab === 'service';
  $('tokens-caption').textContent = service ? 'Service tokens' : 'Your personal tokens';
  $('intro').textContent = service
    ? 'Service tokens belong to service users: automation that keeps working when people leave. They carry the service user\'s role.'
    : 'Tokens let scripts, CI and notebooks call the API as you, with Authorization: Bearer <token>. They carry your current role.';
  for (const th of document.querySelectorAll('.owner-col')) th.hidden = !service;
  let tokens;
  try {
    tokens = await listAll(service ? '/api/user-tokens/service' : '/api/user-tokens');
  } catch (e) {
    if (e.status !== 401) say(`Could not load the tokens: ${e.message}`);
    return;
  }
  const body = $('token-rows');
  body.replaceChildren();
  $('empty').hidden = tokens.length !== 0;
  for (const t of tokens) body.append(...(await row(t, service)));
}

async function row(t, service) {
  const status = el('td', { 'data-label': 'Status' },
    el('span', { class: `badge ${t.status}`, text: STATUS[t.status] || t.status }));
  const why = await whyStopped(t);
  if (why) status.append(el('span', { class: 'why', text: why }));
  const name = el('td', { 'data-label': 'Name' }, el('strong', { text: t.name }));
  if (t.scim_endpoints_only) name.append(el('span', { class: 'tag', text: 'SCIM' }));
  const acts = el('div', { class: 'row-actions' });
  const tr = el('tr', { 'data-token': String(t.id) }, name, status,
    el('td', { 'data-label': 'Expires' }, timeEl(t.expiration, 'Never')),
    el('td', { 'data-label': 'Last used' }, timeEl(t.last_used, 'Never used', true)),
    el('td', { 'data-label': 'Created' }, timeEl(t.created, '', true)),
    service ? el('td', { 'data-label': 'Service user', text: t.user ? (t.user.user_name || t.user.user_id) : '' }) : null,
    el('td', {}, acts));
  const detail = el('tr', { class: 'activity', hidden: '' }, el('td', { colspan: service ? '7' : '6' }));
  const label = (verb) => `${verb} ${t.name}`;
  acts.append(el('button', { type: 'button', class: 'link', 'aria-expanded': 'false', 'aria-label': label('Activity of'),
    text: 'Activity', onclick: (ev) => toggleActivity(t, detail, ev.currentTarget) }));
  if (t.status === 'active')
    acts.append(el('button', { type: 'button', class: 'secondary', 'aria-label': label('Revoke'), text: 'Revoke',
      onclick: () => change(t, true) }));
  if (t.status === 'revoked')
    acts.append(el('button', { type: 'button', class: 'secondary', 'aria-label': label('Restore'), text: 'Restore',
      onclick: () => change(t, false) }));
  if (t.status !== 'active')
    acts.append(el('button', { type: 'button', class: 'danger', 'aria-label': label('Delete'), text: 'Delete',
      onclick: () => confirmDelete(t) }));
  return [tr, detail];
}

async function toggleActivity(t, detail, button) {
  if (!detail.hidden) {
    detail.hidden = true;
    button.setAttribute('aria-expanded', 'false');
    return;
  }
  const cell = detail.firstChild;
  cell.replaceChildren(el('p', { text: 'Loading...' }));
  detail.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  try {
    const { events } = await api('GET', `/api/user-tokens/${t.id}/activity?limit=20`);
    if (!events.length) { cell.replaceChildren(el('p', { text: 'No activity yet.' })); return; }
    const rows = events.map((e) => el('tr', {},
      el('td', {}, timeEl(e.time, '', true)),
      el('td', { text: e.kind }),
      el('td', { text: e.kind === 'used' ? (e.path || '-') : '-' }),
      el('td', { text: e.kind === 'used' ? (e.client_ip || '-') : (e.actor || '-') }),
      el('td', { text: e.kind === 'used' ? String(e.count) : '-' })));
    cell.replaceChildren(el('table', {},
      el('caption', { class: 'visually-hidden', text: `Recent activity of ${t.name}` }),
      el('thead', {}, el('tr', {}, ...['When', 'Event', 'Path', 'From / by', 'Uses'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, ...rows)));
  } catch (e) {
    cell.replaceChildren(el('p', { text: `Could not load the activity: ${e.message}` }));
  }
}

async function change(t, revoke) {
  try {
    await api('PUT', `/api/user-tokens/${t.id}`, { revoke });
    say(`Token ${t.name} ${revoke ? 'revoked: it stops working on the next request' : 'restored'}.`);
  } catch (e) {
    say(`Could not ${revoke ? 'revoke' : 'restore'} ${t.name}: ${e.message}`);
  }
  await load();
}

function confirmDelete(t) {
  const d = $('confirm-dialog');
  $('confirm-text').textContent = `Delete the token "${t.name}"? It can never be restored or used again, and its name becomes free.`;
  $('confirm-ok').onclick = async () => {
    d.close();
    try {
      await api('DELETE', `/api/user-tokens/${t.id}`);
      say(`Token ${t.name} deleted.`);
    } catch (e) {
      say(`Could not delete ${t.name}: ${e.message}`);
    }
    await load();
  };
  d.showModal();
}

// ---------------------------------------------------------------- creating

async function openCreate() {
  const service = state.tab === 'service';
  $('create-form').reset();
  $('create-error').textContent = '';
  $('create-title').textContent = service ? 'Generate new service token' : 'Generate new token';
  $('create-scim-row').hidden = !state.admin || service;
  $('create-owner-row').hidden = !service;
  if (service) {
    const sel = $('create-owner');
    sel.replaceChildren();
    try {
      const r = await api('GET', '/api/service-users?page_size=500');
      for (const u of r.users)
        sel.append(el('option', { value: u.user_id, text: `${u.user_name || u.user_id} (${u.role})` }));
    } catch (e) { /* the error shows on submit */ }
    if (!sel.options.length) $('create-error').textContent = 'There is no service user yet: an Admin makes one with POST /api/service-users.';
  }
  $('create-dialog').showModal();
  $('create-name').focus();
}

async function submitCreate(ev) {
  ev.preventDefault();
  const service = state.tab === 'service';
  const expiry = new FormData($('create-form')).get('expiry');
  const body = { name: $('create-name').value };
  if (expiry !== 'never') body.expires_in_days = Number(expiry);
  if (!$('create-scim-row').hidden && $('create-scim').checked) body.scim_endpoints_only = true;
  if (service) {
    body.kind = 'service';
    body.service_user_id = $('create-owner').value;
  }
  try {
    const r = await api('POST', '/api/user-tokens', body);
    $('create-dialog').close();
    showSecret(r.bearer_token);
  } catch (e) {
    $('create-error').textContent = e.reason === 'duplicate_name'
      ? `You already have a token named "${body.name}": choose another name.` : e.message;
  }
}

function showSecret(secret) {
  $('secret-value').value = secret;
  $('secret-copied').textContent = '';
  $('secret-dialog').showModal();
  $('secret-value').select();
}

async function copySecret() {
  const input = $('secret-value');
  try {
    await navigator.clipboard.writeText(input.value);
  } catch (e) {
    input.select();
    document.execCommand('copy');
  }
  $('secret-copied').textContent = 'Copied to the clipboard.';
}

async function closeSecret() {
  $('secret-value').value = ''; // the page keeps no copy
  $('secret-dialog').close();
  await load();
}

// ---------------------------------------------------------------- who

function signedOut() {
  state.user = null;
  state.csrf = '';
  $('app').hidden = true;
  $('who').hidden = true;
  $('signed-out').hidden = false;
}

function selectTab(tab) {
  state.tab = tab;
  for (const [name, btn] of [['personal', $('tab-personal')], ['service', $('tab-service')]])
    btn.setAttribute('aria-selected', String(name === tab));
  $('panel').setAttribute('aria-labelledby', `tab-${tab}`);
  load();
}

async function start() {
  let session;
  try {
    session = await api('GET', '/ui/session');
  } catch (e) {
    signedOut();
    return;
  }
  state.csrf = session.csrf;
  try {
    // The server read its clock somewhere in the round trip: take the middle.
    const t0 = Date.now();
    const h = await api('GET', '/api/health');
    state.skew = new Date(h.now).getTime() - (t0 + Date.now()) / 2;
  } catch (e) { state.skew = 0; }
  let user;
  try { user = await api('GET', `/api/users/${encodeURIComponent(session.user_id)}`); } catch (e) { return; }
  state.user = user;
  state.admin = user.role === 'admin';
  $('who-name').textContent = user.name || user.user_name || user.user_id;
  $('who-role').textContent = `(${user.role})`;
  $('who').hidden = false;
  $('logout').hidden = session.via !== 'session';
  $('signed-out').hidden = true;
  $('app').hidden = false;
  $('tab-service').hidden = !state.admin;
  selectTab('personal');
}

document.addEventListener('DOMContentLoaded', () => {
  $('tab-personal').addEventListener('click', () => selectTab('personal'));
  $('tab-service').addEventListener('click', () => selectTab('service'));
  $('refresh').addEventListener('click', () => load());
  $('new-token').addEventListener('click', () => openCreate());
  $('create-form').addEventListener('submit', submitCreate);
  $('create-cancel').addEventListener('click', () => $('create-dialog').close());
  $('secret-copy').addEventListener('click', copySecret);
  $('secret-done').addEventListener('click', closeSecret);
  $('secret-dialog').addEventListener('cancel', () => { $('secret-value').value = ''; load(); });
  $('confirm-cancel').addEventListener('click', () => $('confirm-dialog').close());
  $('logout').addEventListener('click', async () => {
    try { await api('POST', '/ui/logout'); } catch (e) { /* signed out either way */ }
    signedOut();
  });
  start();
});
