// The Access Tokens page (/ui/) in a real browser: Debian's chromium,
// driven by npm's playwright-core (never a downloaded browser), against a
// real patd-testclock over TCP. The whole flow as a user does it, then the
// security properties, then axe-core's WCAG 2.1 AA check. Time moves by
// the test clock. Usage: node test_ui.mjs BINDIR [SCREENSHOT_DIR]
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const bindir = process.argv[2];
const shots = process.argv[3] || '';
let passed = 0, failed = 0;
function check(cond, what, detail = '') {
  if (cond) passed++;
  else { failed++; console.error(`FAIL: ${what} ${detail}`); }
  return cond;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startPatd(extra) {
  const work = mkdtempSync(join(tmpdir(), 'patd-ui-'));
  const pf = join(work, 'port'), hpf = join(work, 'http-port');
  const proc = spawn(join(bindir, 'patd-testclock'), ['--data-dir', join(work, 'data'),
    '--listen', '127.0.0.1:0', '--port-file', pf, '--http-listen', '127.0.0.1:0',
    '--http-port-file', hpf, '--drain-grace-ms', '0', '--workers', '4', ...extra],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  for (let i = 0; i < 1000 && !(existsSync(hpf) && readFileSync(hpf, 'utf8').trim()); i++) await sleep(10);
  const p = {
    work, proc, log: () => log,
    port: Number(readFileSync(pf, 'utf8')), http: Number(readFileSync(hpf, 'utf8')),
    key: readFileSync(join(work, 'data', 'platform.key'), 'utf8').split('\n')[0],
  };
  p.base = `http://127.0.0.1:${p.http}`;
  return p;
}

async function rest(p, method, path, body, actAs) {
  const headers = { Authorization: `Platform ${p.key}` };
  if (actAs) headers['X-Act-As-User'] = actAs;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(p.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

function ctl(p, ...args) {
  return execFileSync(join(bindir, 'patctl'), ['--server', `127.0.0.1:${p.port}`,
    '--platform-key-file', join(p.work, 'data', 'platform.key'), ...args], { encoding: 'utf8' });
}

function link(p, user) {
  return JSON.parse(ctl(p, '--json', 'ui-link', '--as', user, '--ui-url', p.base)).url;
}

// The test clock: AdvanceClock over the framed port, as patctl frames it.
function advance(p, ms) {
  const varint = (v) => { const o = []; do { let b = v % 128; v = Math.floor(v / 128); if (v) b |= 128; o.push(b); } while (v); return o; };
  const field = (n, bytes) => [...varint(n << 3 | 2), ...varint(bytes.length), ...bytes];
  const enc = (s) => [...Buffer.from(s)];
  const env = Buffer.from([...field(2, enc('pat.v1.TestingService/AdvanceClock')),
    ...field(3, [8, ...varint(ms)]),
    ...field(4, [...field(1, enc('authorization')), ...field(2, enc(`Platform ${p.key}`))])]);
  const len = Buffer.alloc(4); len.writeUInt32BE(env.length);
  execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${p.port}; cat >&3; head -c 4 <&3 >/dev/null`],
    { input: Buffer.concat([len, env]) });
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const cspErrors = [];
async function newPage(ctxOpts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...ctxOpts });
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') cspErrors.push(m.text()); });
  page.on('pageerror', (e) => cspErrors.push(`pageerror: ${e.message}`));
  return { context, page };
}

const rowOf = (page, name) => page.locator('#token-rows tr[data-token]', { has: page.locator(`strong:text-is("${name}")`) });
const badge = (page, name) => rowOf(page, name).locator('.badge');
const bg = (loc) => loc.evaluate((e) => getComputedStyle(e).backgroundColor);

const p = await startPatd(['--ui-auth-header', 'X-Forwarded-User', '--trusted-proxies', '10.99.0.0/16']);
const t0 = Date.now();
try {
  await rest(p, 'PUT', '/api/users/alice', { user_name: 'alice', name: 'Alice Admin', role: 'admin' });
  await rest(p, 'PUT', '/api/users/bob', { user_name: 'bob', role: 'member' });

  // ------------------------------------------------ log in with a link
  const { context: actx, page } = await newPage({ permissions: ['clipboard-read', 'clipboard-write'] });
  await page.goto(link(p, 'alice'));
  await page.waitForSelector('#app:not([hidden])');
  check(new URL(page.url()).pathname === '/ui/' && !page.url().includes('code='),
    'the login link lands on /ui/ with the code gone from the address bar', page.url());
  check((await page.textContent('#who-name')) === 'Alice Admin', 'signed in as alice');
  const cookies = await actx.cookies();
  const c = cookies.find((k) => k.name === 'patd_session');
  check(c && c.httpOnly && c.sameSite === 'Strict' && c.expires > Date.now() / 1000,
    'the session cookie is HttpOnly, SameSite=Strict, with a bounded lifetime', JSON.stringify(c));
  const again = await (await fetch(link(p, 'alice').replace(/code=.*/, 'code=' + 'x'.repeat(43)))).status;
  check(again === 400, 'a made-up code is refused');

  // ------------------------------------------------ create a 30-day token, secret once
  await page.click('#new-token');
  await page.waitForSelector('#create-dialog[open]');
  check(await page.isChecked('input[name=expiry][value="30"]'), '30 days is the default (recommended)');
  check(await page.isVisible('#create-scim-row'), 'an Admin sees the SCIM checkbox');
  if (shots) await page.screenshot({ path: join(shots, 'create.png') });
  await page.fill('#create-name', 'laptop');
  await page.click('#create-submit');
  await page.waitForSelector('#secret-dialog[open]');
  const secret = await page.inputValue('#secret-value');
  check(secret.startsWith('patp_'), 'the new token is shown', secret.slice(0, 5));
  check((await page.textContent('#secret-warning')).includes('only time it is shown'), 'with its warning');
  await page.click('#secret-copy');
  check((await page.evaluate(() => navigator.clipboard.readText())) === secret, 'Copy puts it on the clipboard');
  if (shots) await page.screenshot({ path: join(shots, 'secret.png') });
  await page.click('#secret-done');
  // A CI failure: the page learns the server's clock from
  // /api/health, and a slow answer (a loaded CI machine) made it run behind,
  // so a use a moment ago read "in a moment". Slow that answer on purpose.
  const slowHealth = async (route) => {
    const resp = await route.fetch();
    await sleep(1500);
    await route.fulfill({ response: resp });
  };
  await page.route('**/api/health', slowHealth);
  await page.reload();
  await page.waitForSelector('#token-rows tr[data-token]');
  check(!(await page.content()).includes(secret), 'R8 after a reload the secret is nowhere in the page');
  check((await badge(page, 'laptop').textContent()) === 'Active' &&
    (await bg(badge(page, 'laptop'))) === 'rgb(17, 99, 41)', 'a green Active badge');
  const exp = rowOf(page, 'laptop').locator('td[data-label=Expires] time');
  check((await exp.textContent()) === 'in 30 days' && (await exp.getAttribute('title')).length > 10,
    'the expiry, with the exact local time on hover', await exp.textContent());
  check((await rowOf(page, 'laptop').locator('td[data-label="Last used"]').textContent()) === 'Never used',
    'R15 never used yet');

  // ------------------------------------------------ use it from curl: last used changes
  const code = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H',
    `Authorization: Bearer ${secret}`, '-H', 'X-Original-URI: /api/v1/projects', `${p.base}/v1/verify`], { encoding: 'utf8' });
  check(code === '200', 'the token works from curl', code);
  await page.click('#refresh');
  await page.waitForFunction(() => !document.querySelector('#token-rows td[data-label="Last used"] .never'));
  const lastUsed = await rowOf(page, 'laptop').locator('td[data-label="Last used"] time').textContent();
  check(lastUsed === 'just now', 'R15 the last-used time changes, "just now" even with a slow clock answer', lastUsed);
  await page.unroute('**/api/health', slowHealth);
  await rowOf(page, 'laptop').getByRole('button', { name: 'Activity of laptop' }).click();
  await page.waitForSelector('.activity:not([hidden]) table');
  const act = await page.textContent('.activity:not([hidden])');
  check(act.includes('/api/v1/projects') && act.includes('127.0.0.1') && act.includes('used'),
    'R22 the activity shows the path and the address', act.slice(0, 200));

  // ------------------------------------------------ revoke, restore
  await rowOf(page, 'laptop').getByRole('button', { name: 'Revoke laptop' }).click();
  await page.waitForFunction(() => document.querySelector('#token-rows .badge')?.textContent === 'Revoked');
  check((await bg(badge(page, 'laptop'))) === 'rgb(149, 56, 0)', 'R16 an orange Revoked badge');
  check((await rowOf(page, 'laptop').locator('.why').textContent()).includes('by alice'),
    'R21 why it stopped: revoked by alice');
  check(await rowOf(page, 'laptop').getByRole('button', { name: 'Restore laptop' }).isVisible(), 'Restore is offered');
  const refused = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H',
    `Authorization: Bearer ${secret}`, `${p.base}/v1/verify`], { encoding: 'utf8' });
  check(refused === '401', 'R16 revoked from the page: refused on the next request', refused);
  await rowOf(page, 'laptop').getByRole('button', { name: 'Restore laptop' }).click();
  await page.waitForFunction(() => document.querySelector('#token-rows .badge')?.textContent === 'Active');
  check(true, 'R17 restored');

  // ------------------------------------------------ delete a revoked token, after confirming
  await page.click('#new-token');
  await page.fill('#create-name', 'old');
  await page.check('input[name=expiry][value=never]');
  await page.click('#create-submit');
  await page.waitForSelector('#secret-dialog[open]');
  await page.click('#secret-done');
  await rowOf(page, 'old').waitFor();
  check(await rowOf(page, 'old').getByRole('button', { name: 'Delete old' }).count() === 0,
    'R19 no Delete for an active token');
  await rowOf(page, 'old').getByRole('button', { name: 'Revoke old' }).click();
  await rowOf(page, 'old').getByRole('button', { name: 'Delete old' }).waitFor();
  await rowOf(page, 'old').getByRole('button', { name: 'Delete old' }).click();
  await page.waitForSelector('#confirm-dialog[open]');
  await page.click('#confirm-cancel');
  check(await rowOf(page, 'old').count() === 1, 'Cancel keeps it');
  await rowOf(page, 'old').getByRole('button', { name: 'Delete old' }).click();
  await page.click('#confirm-ok');
  await page.waitForFunction(() => ![...document.querySelectorAll('#token-rows strong')].some((s) => s.textContent === 'old'));
  check(true, 'R19 deleted after confirming');

  // ------------------------------------------------ keyboard only: make a token
  await page.focus('#new-token');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#create-dialog[open]');
  check(await page.evaluate(() => document.activeElement.id) === 'create-name', 'the dialog takes the focus');
  await page.keyboard.type('keyboard');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#secret-dialog[open]');
  await page.keyboard.press('Escape');
  await rowOf(page, 'keyboard').waitFor();
  check(true, 'a token made with the keyboard alone (Enter, typing, Escape)');

  // ------------------------------------------------ expiry by the test clock
  for (const name of ['notebook', 'nightly-ci'])
    await fetch(`${p.base}/api/user-tokens`, { method: 'POST', body: JSON.stringify({ name }),
      headers: { Authorization: `Platform ${p.key}`, 'X-Act-As-User': 'alice', 'Content-Type': 'application/json' } });
  advance(p, 31 * 86400 * 1000);
  await page.reload();
  await page.waitForSelector('#signed-out:not([hidden])');
  check(true, 'the session ended at its lifetime (--ui-session-ttl, by the test clock)');
  await page.goto(link(p, 'alice'));
  await rowOf(page, 'laptop').waitFor();
  check((await badge(page, 'laptop').textContent()) === 'Expired' &&
    (await bg(badge(page, 'laptop'))) === 'rgb(164, 14, 38)', 'R12 a red Expired badge');
  check(await rowOf(page, 'laptop').getByRole('button', { name: 'Restore laptop' }).count() === 0 &&
    await rowOf(page, 'laptop').getByRole('button', { name: 'Delete laptop' }).count() === 1,
    'R18 no Restore for an expired token; Delete is offered');
  check((await rowOf(page, 'laptop').locator('.why').textContent()).startsWith('It expired'),
    'R21 why it stopped: expired');
  await rowOf(page, 'notebook').getByRole('button', { name: 'Revoke notebook' }).click();
  await rowOf(page, 'notebook').getByRole('button', { name: 'Restore notebook' }).waitFor();
  if (shots) await page.screenshot({ path: join(shots, 'list.png') });

  // ------------------------------------------------ roles: Service tab and SCIM
  check(await page.isVisible('#tab-service'), 'an Admin sees the Service tab');
  const bot = await rest(p, 'POST', '/api/service-users', { user_name: 'deploy-bot', role: 'manager' }, 'alice');
  check(bot.status === 201, 'a service user to make tokens for', JSON.stringify(bot.body));
  await page.click('#tab-service');
  await page.waitForFunction(() => document.querySelector('#tokens-caption').textContent === 'Service tokens');
  await page.click('#new-token');
  await page.waitForSelector('#create-dialog[open]');
  check(await page.isVisible('#create-owner-row') && !(await page.isVisible('#create-scim-row')),
    'R4 a service token is made for a chosen service user');
  await page.fill('#create-name', 'deploy');
  await page.click('#create-submit');
  await page.waitForSelector('#secret-dialog[open]');
  await page.click('#secret-done');
  await rowOf(page, 'deploy').waitFor();
  check((await rowOf(page, 'deploy').locator('td[data-label="Service user"]').textContent()) === 'deploy-bot',
    'R4 the Service tab lists it with its service user');
  const { context: bctx, page: bob } = await newPage();
  await bob.goto(link(p, 'bob'));
  await bob.waitForSelector('#app:not([hidden])');
  check(!(await bob.isVisible('#tab-service')), 'a Member sees no Service tab');
  await bob.click('#new-token');
  await bob.waitForSelector('#create-dialog[open]');
  check(!(await bob.isVisible('#create-scim-row')), 'a Member sees no SCIM checkbox');
  await bob.click('#create-cancel');
  await rest(p, 'PUT', '/api/users/alice', { role: 'member' });
  await page.reload();
  await page.waitForSelector('#app:not([hidden])');
  await page.click('#new-token');
  await page.waitForSelector('#create-dialog[open]');
  check(!(await page.isVisible('#tab-service')) && !(await page.isVisible('#create-scim-row')),
    'R13 downgraded to Member: no Service tab, no SCIM checkbox after a reload');
  await page.click('#create-cancel');

  // ------------------------------------------------ security
  const noCsrf = await bob.evaluate(async () => (await fetch('/api/user-tokens', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: '{"name":"csrf"}' })).status);
  check(noCsrf === 403, 'a change without the CSRF token is refused', noCsrf);
  const { context: fctx, page: forged } = await newPage({ extraHTTPHeaders: { 'X-Forwarded-User': 'alice' } });
  await forged.goto(`${p.base}/ui/`);
  await forged.waitForSelector('#signed-out:not([hidden])');
  check(true, 'a forged auth header from an untrusted peer is ignored');
  await rest(p, 'POST', '/api/users/bob/deactivate');
  await bob.reload();
  await bob.waitForSelector('#signed-out:not([hidden])');
  await rest(p, 'POST', '/api/users/bob/activate');
  await bob.reload();
  await bob.waitForSelector('#signed-out:not([hidden])');
  check(true, 'R14 a deactivated user\'s session ends, and stays ended');
  await page.click('#logout');
  await page.waitForSelector('#signed-out:not([hidden])');
  await page.reload();
  await page.waitForSelector('#signed-out:not([hidden])');
  check(true, 'sign out ends the session');
  const head = await fetch(`${p.base}/ui/`);
  const csp = head.headers.get('content-security-policy') || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe') && csp.includes("frame-ancestors 'none'") &&
    head.headers.get('x-content-type-options') === 'nosniff', 'a strict CSP and nosniff', csp);
  const js = await fetch(`${p.base}/ui/app.js`);
  check(js.headers.get('content-type').startsWith('text/javascript') &&
    js.headers.get('cache-control').includes('max-age'), 'assets have their type and Cache-Control');
  // Refused loads (the 401s and the 403 above) are expected; a CSP
  // violation or a script error is not.
  const bad = cspErrors.filter((m) => !m.startsWith('Failed to load resource'));
  check(!bad.length, 'the page works under its CSP: no violation, no script error', bad.join(' | '));

  // ------------------------------------------------ a phone, and axe-core
  const { context: phone, page: ph } = await newPage({ viewport: { width: 390, height: 844 } });
  await rest(p, 'PUT', '/api/users/alice', { role: 'admin' });
  await ph.goto(link(p, 'alice'));
  await ph.waitForSelector('#token-rows tr[data-token]');
  check(await ph.evaluate(() => document.documentElement.scrollWidth <= 390 &&
    getComputedStyle(document.querySelector('#token-rows tr')).display === 'block'),
  'on a phone each token is a card and nothing scrolls sideways');
  const tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
  const serious = (r) => r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  let res = await new AxeBuilder({ page: ph }).withTags(tags).analyze();
  check(!serious(res).length, 'axe: no serious violation on the list', JSON.stringify(serious(res).map((v) => v.id)));
  await ph.click('#new-token');
  await ph.waitForSelector('#create-dialog[open]');
  res = await new AxeBuilder({ page: ph }).withTags(tags).analyze();
  check(!serious(res).length, 'axe: no serious violation in the create dialog', JSON.stringify(serious(res).map((v) => v.id)));
  await ph.click('#create-cancel');
  await ph.locator('#token-rows tr[data-token]').first().getByRole('button', { name: /^Activity of/ }).click();
  res = await new AxeBuilder({ page: ph }).withTags(tags).analyze();
  check(!serious(res).length, 'axe: no serious violation with the activity open', JSON.stringify(serious(res).map((v) => v.id)));
  await Promise.all([actx.close(), bctx.close(), fctx.close(), phone.close()]);
  check(!p.log().includes(secret), 'the secret is not in patd\'s log');
} finally {
  await browser.close();
  p.proc.kill('SIGTERM');
  await new Promise((r) => p.proc.once('exit', r));
  rmSync(p.work, { recursive: true, force: true });
}

// The auth proxy from a trusted peer: the header names the user.
const q = await startPatd(['--ui-auth-header', 'X-Forwarded-User']);
try {
  await rest(q, 'PUT', '/api/users/carol', { user_name: 'carol' });
  const s = await (await fetch(`${q.base}/ui/session`, { headers: { 'X-Forwarded-User': 'carol' } })).json();
  check(s.user_id === 'carol' && s.via === 'proxy' && s.csrf.length === 43,
    'from a trusted proxy the header signs the user in', JSON.stringify(s));
  const bad = await fetch(`${q.base}/api/user-tokens`, { method: 'POST',
    headers: { 'X-Forwarded-User': 'carol', 'Content-Type': 'application/json' }, body: '{"name":"n"}' });
  const good = await fetch(`${q.base}/api/user-tokens`, { method: 'POST',
    headers: { 'X-Forwarded-User': 'carol', 'X-CSRF-Token': s.csrf, 'Content-Type': 'application/json' }, body: '{"name":"n"}' });
  check(bad.status === 403 && good.status === 201, 'through the proxy a change needs the CSRF token too',
    `${bad.status} ${good.status}`);
} finally {
  q.proc.kill('SIGTERM');
  await new Promise((r) => q.proc.once('exit', r));
  rmSync(q.work, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
