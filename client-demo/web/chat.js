// chat.js - the chat panel both pages use in a session: the message list,
// each own message's delivery state (sending → sent → delivered), the
// typing indicator both ways, and an `ack` for every message shown.
// It builds its own DOM inside the container the page gives it.
import { el } from './ui.js';

const TYPING_IDLE_MS = 3000;    // stop "typing" after this long without a key
const PEER_TYPING_MAX_MS = 15000; // forget a peer's "typing" if "off" never came
const STATE_TEXT = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered',
  failed: 'Not sent — the connection dropped' };
const utf8 = new TextEncoder();

export class Chat {
  // socket: an EarshotSocket; maxBytes: the server's max-text-bytes.
  constructor(container, socket, { maxBytes = 4000 } = {}) {
    this.socket = socket;
    this.maxBytes = maxBytes;
    this.nextId = 1;
    this.byId = new Map();    // own message id → its <li>
    this.bySeq = new Map();   // own message seq → its <li>
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
    this.bySeq.clear();
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
    this.setPeerTyping(false);
    this.setEnabled(false);
    for (const li of this.byId.values())
      if (li.dataset.state === 'sending') this.setState(li, 'failed');
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
      if (li) {
        this.bySeq.set(msg.seq, li);
        if (li.dataset.state === 'sending') this.setState(li, 'sent');
      }
      return true;
    }
    case 'delivered': {
      const li = this.bySeq.get(msg.seq);
      if (li) this.setState(li, 'delivered');
      return true;
    }
    case 'typing': this.setPeerTyping(msg.on); return true;
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
    this.setState(li, this.socket.send({ type: 'msg', id, text }) ? 'sending' : 'failed');
    this.error.textContent = '';
    this.input.value = '';
    this.setTyping(false);
    this.input.focus();
  }

  received(msg) {
    this.setPeerTyping(false);
    this.append('theirs', this.peerLabel, msg.text);
    this.unacked.push(msg.seq);
    this.flushAcks();
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
    if (on === this.typingOn) return;
    this.typingOn = on;
    this.socket.send({ type: 'typing', on });
  }

  setPeerTyping(on) {
    clearTimeout(this.peerTimer);
    this.typing.textContent = on ? `${this.peerLabel} is typing…` : '';
    if (on) this.peerTimer = setTimeout(() => this.setPeerTyping(false), PEER_TYPING_MAX_MS);
  }
}
