// chat.js - the chat panel both pages use in a session: the message list,
// each own message's delivery state (sending → sent → delivered), the
// typing indicator both ways, and an `ack` for every message shown.
// It builds its own DOM inside the container the page gives it.
//
// Across a dropped connection (PROTOCOL.md "Resume after a dropped
// connection") the conversation stays: suspend() keeps the log and lets the
// person go on writing (held back, "Waiting for the connection…"), and
// resume() with the resumed session_start settles what the server took
// while we were away: ids up to `last_id` are sent, later ones are sent
// again in order, seqs up to `acked` delivered. Message ids keep rising
// across the resume (the server answers an old id `duplicate`, which is
// taken quietly as "sent"), and a peer message the server sends again is
// acknowledged but shown once.
import { el } from './ui.js';

const TYPING_IDLE_MS = 3000;    // stop "typing" after this long without a key
const PEER_TYPING_MAX_MS = 15000; // forget a peer's "typing" if "off" never came
const STATE_TEXT = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered',
  waiting: 'Waiting for the connection…', failed: 'Not sent — the connection dropped' };
const utf8 = new TextEncoder();

export class Chat {
  // socket: an EarshotSocket; maxBytes: the server's max-text-bytes.
  constructor(container, socket, { maxBytes = 4000 } = {}) {
    this.socket = socket;
    this.maxBytes = maxBytes;
    this.nextId = 1;          // ids rise for the page's life, so across sessions and resumes
    this.byId = new Map();    // own message id → its <li> (dataset.seq once `sent`)
    this.unsent = new Map();  // own message id → its text, until the server took it
    this.answers = [];        // ids sent on this connection, awaiting `sent` or an error, in order
    this.peerSeq = 0;         // the last peer seq shown
    this.suspended = false;   // the connection dropped; the session may come back
    this.unacked = [];        // peer seqs shown while the page was hidden
    this.typingOn = false;
    this.typingTimer = null;
    this.peerTimer = null;
    this.peerLabel = 'The other person';
    this.build(container);
    document.addEventListener('visibilitychange', () => this.flushAcks());
  }

  build(container) {
    this.log = el('ol', { className: 'chat-log', tabIndex: 0 });
    this.log.setAttribute('role', 'log');
    this.log.setAttribute('aria-label', 'Conversation');
    this.log.setAttribute('aria-relevant', 'additions');
    this.typing = el('p', { className: 'typing' });
    this.typing.setAttribute('aria-live', 'polite');
    this.input = el('textarea', { id: 'chat-text', rows: 2, className: 'chat-input',
      placeholder: 'Type a message', autocomplete: 'off' });
    this.input.setAttribute('aria-describedby', 'chat-hint');
    this.sendBtn = el('button', { type: 'submit', className: 'primary' }, 'Send');
    this.error = el('p', { className: 'chat-error' });
    this.error.setAttribute('role', 'alert');
    const label = el('label', { htmlFor: 'chat-text', className: 'sr-only' }, 'Your message');
    const hint = el('p', { id: 'chat-hint', className: 'hint' },
      'Enter sends; Shift+Enter starts a new line.');
    this.form = el('form', { className: 'composer' }, label,
      el('div', { className: 'composer-row' }, this.input, this.sendBtn), hint);
    container.replaceChildren(this.log, this.typing, this.form, this.error);

    this.form.addEventListener('submit', (e) => { e.preventDefault(); this.submit(); });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => this.onInput());
  }

  // A new session: an empty conversation with `peerLabel` ("Sam", "The client").
  start(peerLabel) {
    this.peerLabel = peerLabel;
    this.byId.clear();
    this.unsent.clear();
    this.answers = [];
    this.peerSeq = 0;
    this.suspended = false;
    this.unacked = [];
    this.log.replaceChildren();
    this.error.textContent = '';
    this.setPeerTyping(false);
    this.setEnabled(true);
  }

  // The session is over (or the connection with it): no more sending.
  stop() {
    clearTimeout(this.typingTimer);
    this.typingOn = false;          // the server takes no typing after the end
    this.suspended = false;
    this.setPeerTyping(false);
    this.setEnabled(false);
    for (const li of this.byId.values())
      if (li.dataset.state === 'sending' || li.dataset.state === 'waiting') this.setState(li, 'failed');
    this.unsent.clear();
    this.answers = [];
  }

  // The connection dropped, but the server keeps the session for a while:
  // keep the conversation, and hold back what is written meanwhile.
  suspend() {
    clearTimeout(this.typingTimer);
    this.typingOn = false;
    this.suspended = true;
    this.setPeerTyping(false);
    this.answers = [];              // replies for the old connection will not come
    for (const id of this.unsent.keys()) this.setState(this.byId.get(id), 'waiting');
  }

  // Back in the session (session_start with `resumed`): the server took our
  // messages up to `last_id` (absent: none) and the peer has seen ours up
  // to seq `acked`. Send again, in order, what it did not take.
  resume({ last_id: lastId = -1, acked = 0 }) {
    this.suspended = false;
    this.nextId = Math.max(this.nextId, lastId + 1);
    this.setEnabled(true);
    this.error.textContent = '';
    for (const [id, text] of [...this.unsent].sort((a, b) => a[0] - b[0])) {
      const li = this.byId.get(id);
      if (id <= lastId) {
        this.unsent.delete(id);
        this.setState(li, 'sent');
      } else {
        this.transmit(id, text, li);
      }
    }
    if (acked > 0) this.delivered(acked);
  }

  setEnabled(on) {
    this.input.disabled = !on;
    this.sendBtn.disabled = !on;
  }

  focus() {
    this.input.focus();
  }

  // Handle a session message; true when it was one of chat's.
  handle(msg) {
    switch (msg.type) {
    case 'msg': this.received(msg); return true;
    case 'sent': {
      const li = this.byId.get(msg.id);
      this.answers = this.answers.filter((id) => id > msg.id);
      this.unsent.delete(msg.id);
      if (li) {
        li.dataset.seq = String(msg.seq);
        if (li.dataset.state !== 'delivered') this.setState(li, 'sent');
      }
      return true;
    }
    case 'delivered': this.delivered(msg.seq); return true;
    case 'typing': this.setPeerTyping(msg.on); return true;
    case 'error': {
      // An id the server already took (sent again across a resume): it was
      // sent, so say so; nothing went wrong that the person should see.
      if (msg.code !== 'duplicate') return false;
      const id = this.answers.shift();
      if (id !== undefined && this.unsent.delete(id)) this.setState(this.byId.get(id), 'sent');
      return true;
    }
    default: return false;
    }
  }

  submit() {
    const text = this.input.value.trim();
    if (!text || this.input.disabled) return;
    if (utf8.encode(text).length > this.maxBytes) {
      this.error.textContent = 'That message is too long to send in one piece. Please split it.';
      return;
    }
    const id = this.nextId++;
    const li = this.append('mine', 'You', text);
    this.byId.set(id, li);
    this.unsent.set(id, text);
    if (this.suspended) this.setState(li, 'waiting');
    else this.transmit(id, text, li);
    this.error.textContent = '';
    this.input.value = '';
    this.setTyping(false);
    this.input.focus();
  }

  transmit(id, text, li) {
    if (this.socket.send({ type: 'msg', id, text })) {
      this.answers.push(id);
      this.setState(li, 'sending');
    } else {
      this.unsent.delete(id);
      this.setState(li, 'failed');
    }
  }

  // The peer displayed our seq `seq`, and with it every earlier one: also
  // those taken while we were away, whose seq we never heard (ids rise in
  // the order the server took them, so they come before a known one).
  delivered(seq) {
    let upTo = -1;
    for (const [id, li] of this.byId) {
      const s = Number(li.dataset.seq || 0);
      if (s && s <= seq) {
        if (li.dataset.state !== 'delivered') this.setState(li, 'delivered');
        upTo = Math.max(upTo, id);
      }
    }
    for (const [id, li] of this.byId)
      if (id < upTo && li.dataset.state === 'sent') this.setState(li, 'delivered');
  }

  received(msg) {
    this.setPeerTyping(false);
    // Sent again after a resume: acknowledge it again, show it once.
    if (msg.seq > this.peerSeq) {
      this.peerSeq = msg.seq;
      this.append('theirs', this.peerLabel, msg.text);
    }
    this.unacked.push(msg.seq);
    this.flushAcks();
  }

  // A line from the page itself, not from either person.
  note(text) {
    const li = el('li', { className: 'msg system' }, el('p', { className: 'msg-text' }, text));
    this.log.append(li);
  }

  // "Delivered" means the person could see it: ack only while visible.
  flushAcks() {
    if (document.visibilityState !== 'visible') return;
    for (const seq of this.unacked) this.socket.send({ type: 'ack', seq });
    this.unacked = [];
  }

  append(who, label, text) {
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    const li = el('li', { className: `msg ${who}` },
      el('span', { className: 'sr-only' }, `${label}: `),
      el('p', { className: 'msg-text' }, text));
    this.log.append(li);
    if (nearBottom || who === 'mine') this.log.scrollTop = this.log.scrollHeight;
    return li;
  }

  setState(li, state) {
    li.dataset.state = state;
    let s = li.querySelector('.msg-state');
    if (!s) li.append(s = el('span', { className: 'msg-state' }));
    s.textContent = STATE_TEXT[state];
  }

  // Own typing: "on" at the first key, "off" after a pause, on send, or
  // when the box is emptied. One message per change, not per key.
  onInput() {
    clearTimeout(this.typingTimer);
    if (!this.input.value.trim()) {
      this.setTyping(false);
      return;
    }
    this.setTyping(true);
    this.typingTimer = setTimeout(() => this.setTyping(false), TYPING_IDLE_MS);
  }

  setTyping(on) {
    clearTimeout(this.typingTimer);
    if (on === this.typingOn || this.suspended) return;
    this.typingOn = on;
    this.socket.send({ type: 'typing', on });
  }

  setPeerTyping(on) {
    clearTimeout(this.peerTimer);
    this.typing.textContent = on ? `${this.peerLabel} is typing…` : '';
    if (on) this.peerTimer = setTimeout(() => this.setPeerTyping(false), PEER_TYPING_MAX_MS);
  }
}
