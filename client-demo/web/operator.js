// operator.js - the operator dashboard (/operator): connects as an operator,
// subscribes to `stats` (PROTOCOL.md) and shows them: the numbers as they
// are now, a chart of the queue over the last hour (chart.js), a banner
// while the connection is down, and sessions in crisis at the top (with a
// notification when one is flagged): who and since when, never content.
// Feedback (`ratings`) per counselor and per topic is asked for when the
// number of ratings changes, and every half minute.
import { EarshotSocket, tokenFor } from './socket.js';
import { TimeChart } from './chart.js';
import { notify } from './attention.js';

const HOUR_MS = 3600 * 1000;
const SUMMARY_EVERY_MS = 60 * 1000;
const RATINGS_EVERY_MS = 30 * 1000;

// stats.media.dropped_<reason>, in the words an operator reads.
const DROP_REASONS = [
  ['auth', 'Failed authentication'],
  ['replay', 'Replayed'],
  ['bad_rtp', 'Malformed RTP'],
  ['not_opus', 'Not Opus'],
  ['too_large', 'Too large'],
  ['rate', 'Over the rate limit'],
  ['stale', 'Too late (overload)'],
  ['no_session', 'Outside a voice session'],
  ['slow_reader', 'Slow receiver'],
];
const COUNSELOR_STATES = ['available', 'ringing', 'busy', 'wrapup', 'away'];

const $ = (id) => document.getElementById(id);
const count = new Intl.NumberFormat('en');

// 41 -> "0:41", 3725 -> "1:02:05"
export function mss(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

function duration(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// Set text only when it changed, so live regions announce real changes.
function show(id, text) {
  const el = $(id);
  if (el.textContent !== text) el.textContent = text;
}

const chart = new TimeChart($('chart'), {
  series: [
    { key: 'queue', axis: 'left', kind: 'count', step: true, format: (v) => count.format(v) },
    { key: 'wait', axis: 'right', kind: 'seconds', dash: [6, 4], format: mss },
  ],
  windowMs: HOUR_MS,
  maxPoints: 3600,
});

const view = {
  socket: null,
  stats: null,        // the last `stats`
  statsAt: 0,         // when it arrived (ms)
  live: false,        // connected and subscribed
  retryAt: 0,         // when the socket tries again (ms), while down
  goingAway: false,   // the server said it is stopping
  summaryAt: 0,
  ratingsAt: 0,       // when `ratings` was last asked for (ms)
  ratingsCount: -1,   // stats.ratings.count then
};

function render(st) {
  show('queue', count.format(st.queue));
  show('oldest', st.queue > 0 ? mss(st.oldest_wait_s) : '–');
  show('sessions', count.format(st.sessions));
  show('available-now', count.format(st.counselors.available));
  for (const s of COUNSELOR_STATES) show(`c-${s}`, count.format(st.counselors[s]));
  const c = st.counselors;
  const online = c.available + c.ringing + c.busy + c.wrapup;
  show('c-online', `${count.format(online)} online, ${count.format(online + c.away)} connected`);

  show('served', count.format(st.served));
  show('abandoned', count.format(st.abandoned));
  const left = st.served + st.abandoned;
  show('abandon-rate', left > 0 ? `${Math.round((100 * st.abandoned) / left)}%` : '–');
  show('ratings', st.ratings.count > 0
    ? `${count.format(st.ratings.count)}, mean ${st.ratings.mean.toFixed(1)}`
    : 'none yet');
  show('connections', count.format(st.connections));
  renderUptime();
  renderMedia(st.media);
  renderNodes(st.nodes || []);
  renderCrises(st.crises || []);
  document.title = st.queue > 0 ? `(${st.queue}) earshot · operator` : 'earshot · operator';
}

// The server sends uptime only with other news; count on between messages.
function renderUptime() {
  if (!view.stats) return;
  const extra = view.live ? (Date.now() - view.statsAt) / 1000 : 0;
  show('uptime', duration(view.stats.uptime_s + extra));
}

function renderMedia(media) {
  show('m-relayed', count.format(media.relayed));
  const reasons = DROP_REASONS.filter(([k]) => media[`dropped_${k}`] > 0);
  const total = DROP_REASONS.reduce((n, [k]) => n + (media[`dropped_${k}`] || 0), 0);
  show('m-dropped', count.format(total));
  const list = $('m-reasons');
  list.hidden = reasons.length === 0;
  const rows = reasons.map(([k, label]) => {
    const row = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = label;
    dd.textContent = count.format(media[`dropped_${k}`]);
    row.append(dt, dd);
    return row;
  });
  const now = Array.from(list.children, (r) => r.textContent).join('|');
  if (now !== rows.map((r) => r.textContent).join('|')) list.replaceChildren(...rows);
}

// Sessions flagged in crisis: each listed while it lasts; a new one is
// announced (role=alert) and, when allowed, notified.
const crisesSeen = new Set();
function renderCrises(crises) {
  const items = crises.map((c) => Object.assign(document.createElement('li'), {
    textContent: `Session ${c.session_id} · counselor ${c.counselor} · flagged ${mss(c.since_s)} ago`,
  }));
  $('crisis-list').replaceChildren(...items);
  $('crises').hidden = crises.length === 0;
  for (const c of crises) {
    if (crisesSeen.has(c.session_id)) continue;
    crisesSeen.add(c.session_id);
    notify('earshot: crisis flagged', `Counselor ${c.counselor}, session ${c.session_id}`);
  }
  if (crises.length) document.title = `(crisis) ${document.title}`;
}

function renderNodes(nodes) {
  const rows = nodes.map((n) => {
    const tr = document.createElement('tr');
    const th = Object.assign(document.createElement('th'), { scope: 'row', textContent: n.node });
    tr.append(th);
    for (const v of [count.format(n.sessions), count.format(n.connections), count.format(n.relayed),
      count.format(n.dropped), duration(n.uptime_s)])
      tr.append(Object.assign(document.createElement('td'), { textContent: v }));
    return tr;
  });
  const list = $('nodes');
  const now = Array.from(list.children, (r) => r.textContent).join('|');
  if (now !== rows.map((r) => r.textContent).join('|')) list.replaceChildren(...rows);
}

// ---- feedback ----

function askRatings(now) {
  if (!view.live) return;
  view.ratingsAt = now;
  view.socket.send({ type: 'ratings' });
}

// One row per counselor or topic: name, count, mean, then each score's count.
function ratingRows(entries, key) {
  if (!entries.length) {
    const td = Object.assign(document.createElement('td'), { colSpan: 8, textContent: 'No ratings yet.' });
    const tr = document.createElement('tr');
    tr.append(td);
    return [tr];
  }
  return entries.map((e) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('th'), { scope: 'row', textContent: e[key] }));
    for (const v of [count.format(e.count), e.count ? e.mean.toFixed(1) : '–',
      ...e.hist.map((n) => count.format(n))])
      tr.append(Object.assign(document.createElement('td'), { textContent: v }));
    return tr;
  });
}

function renderRatings(msg) {
  for (const [id, entries, key] of [['fb-counselors', msg.counselors || [], 'sub'],
    ['fb-topics', msg.topics || [], 'topic']]) {
    const rows = ratingRows(entries, key);
    const body = $(id);
    const now = Array.from(body.children, (r) => r.textContent).join('|');
    if (now !== rows.map((r) => r.textContent).join('|')) body.replaceChildren(...rows);
  }
}

function sample(now) {
  if (!view.live || !view.stats) return;
  chart.add(now, { queue: view.stats.queue, wait: view.stats.queue > 0 ? view.stats.oldest_wait_s : 0 });
}

// The chart's text alternative, refreshed once a minute (and at the first
// numbers), not on every sample: a screen reader hears it as it changes.
function summarize(now) {
  const q = chart.extent('queue', now - HOUR_MS);
  const w = chart.extent('wait', now - HOUR_MS);
  view.summaryAt = now;
  if (!q) {
    show('chart-summary', 'No data yet.');
    return;
  }
  const people = (n) => `${count.format(n)} ${n === 1 ? 'person' : 'people'}`;
  const range = q.min === q.max ? `steady at ${people(q.max)}` : `between ${count.format(q.min)} and ${people(q.max)}`;
  const wait = w.max > 0 ? `the longest wait reached ${mss(w.max)}` : 'nobody waited';
  show('chart-summary', `In the last hour: queue ${range} waiting; ${wait}.`);
}

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  show('conn', text);
}

function banner(text, kind = 'down', retry = '') {
  const el = $('banner');
  el.hidden = !text;
  el.dataset.kind = kind;
  show('banner-text', text || '');
  show('banner-retry', retry);
}

function renderDown(now) {
  const wait = Math.max(0, Math.ceil((view.retryAt - now) / 1000));
  const why = view.goingAway ? 'The server is restarting or shutting down.' : 'Connection to the server lost.';
  const since = view.stats ? ` The numbers below are from ${clock(view.statsAt)}.` : '';
  const when = view.retryAt === 0 || wait === 0 ? 'Reconnecting…' : `Reconnecting in ${wait} s…`;
  banner(`${why}${since}`, 'down', when);
}

function onState({ state, retryIn }) {
  onStateChange(state, retryIn);
  chart.draw();
}

function onStateChange(state, retryIn) {
  const main = $('main');
  if (state === 'open') {
    view.live = true;
    view.goingAway = false;
    view.retryAt = 0;
    view.socket.send({ type: 'subscribe' });
    view.ratingsCount = -1;   // the first stats asks for `ratings` again
    setConn('open', 'Live');
    banner('');
    main.classList.remove('op-stale');
    return;
  }
  if (view.live) chart.gap(Date.now());
  view.live = false;
  main.classList.toggle('op-stale', view.stats !== null);
  if (state === 'connecting') {
    setConn('connecting', 'Connecting…');
    if (!$('banner').hidden && $('banner').dataset.kind === 'down') {
      view.retryAt = 0;
      renderDown(Date.now());
    }
    return;
  }
  if (view.socket.stopped) return;   // refused: that banner stays
  setConn('down', 'Disconnected');
  view.retryAt = Date.now() + retryIn;
  renderDown(Date.now());
}

function onMessage(msg) {
  if (msg.type === 'stats') {
    const first = view.stats === null;
    view.stats = msg;
    view.statsAt = Date.now();
    $('main').setAttribute('aria-busy', 'false');
    render(msg);
    if (msg.ratings.count !== view.ratingsCount) {
      view.ratingsCount = msg.ratings.count;
      askRatings(view.statsAt);
    }
    sample(view.statsAt);
    chart.draw(view.statsAt);
    if (first) summarize(view.statsAt);
  } else if (msg.type === 'ratings') {
    renderRatings(msg);
  } else if (msg.type === 'going_away') {
    view.goingAway = true;
  }
}

function onRefused(msg) {
  setConn('down', msg.code === 'replaced' ? 'Closed' : 'Refused');
  banner(msg.code === 'replaced'
    ? 'This dashboard was opened in another tab or window; this one has stopped. Reload to take over.'
    : `The server refused this dashboard (${msg.code}: ${msg.reason}). Open it again from your earshot app.`, 'error');
}

// Once a second: the chart moves on with the last value, the uptime and the
// reconnection countdown tick, and once a minute the summary is rewritten.
function tick() {
  const now = Date.now();
  sample(now);
  chart.draw(now);
  renderUptime();
  if (view.socket && !view.live && view.retryAt) renderDown(now);
  if (view.stats && now - view.summaryAt >= SUMMARY_EVERY_MS) summarize(now);
  if (view.ratingsCount >= 0 && now - view.ratingsAt >= RATINGS_EVERY_MS) askRatings(now);
}

async function start() {
  setInterval(tick, 1000);
  chart.draw();
  let token;
  try {
    token = await tokenFor('operator');
  } catch (e) {
    setConn('down', 'No token');
    banner(`Cannot connect: ${e.message}.`, 'error');
    return;
  }
  const socket = new EarshotSocket({ role: 'operator', token });
  view.socket = socket;
  socket.addEventListener('state', (e) => onState(e.detail));
  socket.addEventListener('message', (e) => onMessage(e.detail));
  socket.addEventListener('refused', (e) => onRefused(e.detail));
  socket.connect();
}

start();
