// socket.js - the earshot protocol connection every page uses: a token,
// the WebSocket to /ws with subprotocol earshot.v1, `hello`, JSON messages
// in and out, and automatic reconnection with backoff. It knows nothing of
// what a page shows; pages listen to its events:
//   'state'   detail { state: 'connecting' | 'open' | 'down', retryIn (ms) }
//   'message' detail: one decoded server message (PROTOCOL.md)
//   'binary'  detail: an ArrayBuffer (voice)
//   'refused' detail: the error message that refused the token (no retry)
//
// Resume (PROTOCOL.md "Resume after a dropped connection"): the
// `resume_token` of each `welcome` is kept, in memory and in this tab's
// sessionStorage (so a reload in the same tab comes back too), and sent as
// `resume` in every later `hello`; the server then restores the place in
// line or the session, and says so with `welcome.resumed`. It is forgotten
// when the page closes the connection on purpose (code 1000: the server
// keeps nothing), when the server refuses us, or when a `welcome` carries
// none. Unloading the page sends 1001, which the server treats as a drop
// and keeps: that is what lets a reload resume.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const AUTH_CODES = new Set(['auth_required', 'token_malformed', 'token_unsigned',
  'token_bad_signature', 'token_expired', 'token_wrong_role', 'replaced']);

// The token for `role`: from the page's URL fragment (#token=..., how a
// hosting app hands it over in production), else in dev mode from the
// server's /dev/token endpoint under a name this browser keeps.
export async function tokenFor(role, { name = '', skills = '' } = {}) {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) return fromHash;
  if (role === 'client') return '';          // dev mode admits anonymous clients
  const key = `earshot.${role}.sub`;
  let sub = localStorage.getItem(key);
  if (!sub) {
    sub = `${role}-${crypto.getRandomValues(new Uint32Array(1))[0].toString(36)}`;
    localStorage.setItem(key, sub);
  }
  const q = new URLSearchParams({ role, sub, name, skills });
  const r = await fetch(`/dev/token?${q}`);
  if (!r.ok) throw new Error('no token: open this page from your earshot app');
  return (await r.text()).trim();
}

const resumeKey = (role) => `earshot.${role}.resume`;

// Whether this tab holds a resume token for `role`: a reloaded page that
// signs in by itself can take its place or its session up again.
export function resumeHeld(role) {
  try {
    return Boolean(sessionStorage.getItem(resumeKey(role)));
  } catch {
    return false;
  }
}

export class EarshotSocket extends EventTarget {
  constructor({ role, token }) {
    super();
    this.role = role;
    this.token = token;
    this.ws = null;
    this.state = 'down';
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.resumeToken = '';
    try {
      this.resumeToken = sessionStorage.getItem(resumeKey(role)) || '';
    } catch {
      // no storage here: resuming still works within this page
    }
    this.graceS = 0;           // how long the server keeps us after a drop (0: not at all)
    // A phone back from a tunnel or a laptop waking up should not sit out
    // the rest of a long backoff: try again as soon as the network or the
    // page is back.
    const retryNow = () => {
      if (this.state === 'down' && !this.stopped && document.visibilityState === 'visible')
        this.connect();
    };
    window.addEventListener('online', retryNow);
    document.addEventListener('visibilitychange', retryNow);
  }

  connect() {
    clearTimeout(this.timer);
    this.setState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/ws`, 'earshot.v1');
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      const hello = { type: 'hello', role: this.role };
      if (this.token) hello.token = this.token;
      if (this.resumeToken) hello.resume = this.resumeToken;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => { if (ws === this.ws) this.onFrame(ev.data); };
    ws.onclose = () => this.onClose(ws);
  }

  onFrame(data) {
    if (typeof data !== 'string') {
      this.dispatchEvent(new CustomEvent('binary', { detail: data }));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type === 'welcome') {
      this.attempt = 0;
      this.remember(msg.resume_token || '', msg.grace_s || 0);
      this.setState('open');
    }
    if (msg.type === 'error' && AUTH_CODES.has(msg.code)) {
      this.stopped = true;  // retrying a refused token only repeats the refusal
      this.remember('', 0);
      this.dispatchEvent(new CustomEvent('refused', { detail: msg }));
    }
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
  }

  onClose(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped) {
      this.setState('down');
      return;
    }
    // Exponential backoff with jitter, so a restarted server is not hit by
    // every tab at the same instant.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    const retryIn = Math.round(base / 2 + Math.random() * base / 2);
    this.setState('down', retryIn);
    this.timer = setTimeout(() => this.connect(), retryIn);
  }

  // Whether a drop now would be kept by the server for a while.
  get resumable() {
    return Boolean(this.resumeToken) && this.graceS > 0;
  }

  remember(token, graceS) {
    this.resumeToken = token;
    this.graceS = token ? graceS : 0;
    try {
      if (token) sessionStorage.setItem(resumeKey(this.role), token);
      else sessionStorage.removeItem(resumeKey(this.role));
    } catch {
      // storage full or blocked: resuming still works within this page
    }
  }

  setState(state, retryIn = 0) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, retryIn } }));
  }

  // Send a protocol message; false when not connected (the page says so).
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  sendBinary(buf) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(buf);
    return true;
  }

  // Bytes sent but not yet on the network (0 when not connected).
  bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  // Leave on purpose: code 1000, so the server keeps nothing to resume.
  close() {
    this.stopped = true;
    this.remember('', 0);
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }
}
