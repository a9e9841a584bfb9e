// voice.js - the audio of a voice session in the page (PROTOCOL.md
// "Voice"): microphone -> AudioWorklet -> WebCodecs Opus (48 kHz mono,
// 20 ms) -> RTP -> SRTP (srtp.js, the profile and keys of session_start)
// -> one binary WebSocket frame per packet; and back: SRTP -> RTP ->
// Opus decoder -> a playback worklet with a 60 ms jitter buffer.
// It knows nothing of what the page shows: it reports the microphone's
// state in 'mic' events and keeps counters in `stats`.
//
// After a dropped connection the session comes back with fresh keys for
// our leg only (PROTOCOL.md "Resume after a dropped connection"); the other
// side's keys stay, and the server relays our packets to it with their SSRC
// and sequence number unchanged. So the stream goes on where it stopped:
// the same SSRC (kept for the whole session, as "Voice" says), the next
// sequence number, the timestamp advanced by the time away, and still
// muted if it was. A new SSRC, or sequence numbers starting over, would be
// refused under the other side's unchanged key (the server pins one SSRC
// per key and counts them `bad_rtp`; so would srtp.js). That position is
// kept in memory, and in this tab's sessionStorage on pagehide, so a
// reload in the same tab goes on too.
import { createSrtp } from './srtp.js';

const RATE = 48000;
const FRAME = 960;                 // samples in 20 ms
const PT_OPUS = 111;
const BITRATE = 24000;
const MAX_BUFFERED = 32 * 1024;    // bytes unsent in the WebSocket: beyond, late audio is skipped
const MAX_ENCODE_QUEUE = 5;        // frames waiting for the encoder: beyond, skip
const LOUD = 0.01;                 // RMS above which a decoded frame is sound, not silence

// Why voice cannot work in this page, in words for the person; '' if it can.
export function voiceUnsupported() {
  if (!window.isSecureContext) return 'voice needs a secure (https) page';
  if (!('AudioEncoder' in window) || !('AudioDecoder' in window) || !window.AudioWorkletNode)
    return "this browser can't carry voice";
  if (!navigator.mediaDevices?.getUserMedia) return "this browser can't use a microphone";
  return '';
}

let audio = null;
let worklet = null;

// The page's AudioContext, created and resumed. Browsers let audio start
// only after a click or key press: call this from one.
export function unlockVoice() {
  audio ??= new AudioContext({ sampleRate: RATE, latencyHint: 'interactive' });
  if (audio.state === 'suspended') audio.resume().catch(() => {});
  return audio;
}

// What went wrong opening the microphone: 'denied' (the person or the
// browser's settings said no), 'missing' (no microphone), 'busy' (another
// program holds it) or 'failed'.
function micProblem(err) {
  return { NotAllowedError: 'denied', SecurityError: 'denied', NotFoundError: 'missing',
    OverconstrainedError: 'missing', NotReadableError: 'busy' }[err?.name] || 'failed';
}

async function openMic() {
  return navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  });
}

// Ask for the microphone ahead of time (before joining the line, so a
// refusal is met before anyone is waiting on the other end), then let it
// go again. '' when it can be used, else the problem as above.
export async function checkMicrophone() {
  try {
    const stream = await openMic();
    for (const t of stream.getTracks()) t.stop();
    return '';
  } catch (err) {
    return micProblem(err);
  }
}

function rtpHeader(seq, ts, ssrc, marker) {
  const h = new Uint8Array(12);
  const v = new DataView(h.buffer);
  h[0] = 0x80;
  h[1] = (marker ? 0x80 : 0) | PT_OPUS;
  v.setUint16(2, seq);
  v.setUint32(4, ts >>> 0);
  v.setUint32(8, ssrc);
  return h;
}

// The payload of an RTP packet from the server (already authenticated), or
// null if its header is not what PROTOCOL.md allows.
function rtpPayload(rtp) {
  if (rtp.length < 12 || rtp[0] >> 6 !== 2 || (rtp[1] & 0x7f) !== PT_OPUS) return null;
  let at = 12 + 4 * (rtp[0] & 0x0f);
  if (rtp[0] & 0x10) {
    if (rtp.length < at + 4) return null;
    at += 4 + 4 * ((rtp[at + 2] << 8) | rtp[at + 3]);
  }
  let end = rtp.length;
  if (rtp[0] & 0x20) end -= rtp[end - 1];
  return at < end ? rtp.subarray(at, end) : null;
}

const random32 = () => crypto.getRandomValues(new Uint32Array(1))[0];

// Where our stream stood when the last call stopped or the page went away:
// { session, ssrc, seq, ts, at (Date.now()), muted }.
const CARRY_KEY = 'earshot.voice.carry';
let carried = null;

function storedCarry() {
  try {
    return JSON.parse(sessionStorage.getItem(CARRY_KEY) || 'null');
  } catch {
    return null;
  }
}

window.addEventListener('pagehide', () => {
  const c = VoiceCall.current;
  if (!c || c.closed || !c.session) return;
  try {
    sessionStorage.setItem(CARRY_KEY, JSON.stringify(c.position()));
  } catch {
    // no storage: after a reload the stream starts afresh
  }
});

export class VoiceCall extends EventTarget {
  // The call in progress, or the last one (diagnostics and tests).
  static current = null;

  constructor(socket) {
    super();
    this.socket = socket;
    this.closed = false;
    this.muted = false;
    this.mic = 'off';          // 'off', 'opening', 'live', or a problem (see micProblem), 'ended'
    this.stream = null;
    this.capture = null;
    this.encoder = null;
    this.ssrc = random32();
    this.seq = random32() & 0xffff;
    this.tsBase = random32();
    this.marker = true;        // the first packet, and the first after a pause
    this.frames = 0;           // 20 ms frames captured (the RTP clock)
    this.outChain = Promise.resolve();
    this.inChain = Promise.resolve();
    this.lastSeq = -1;
    this.stats = { captured: 0, encoded: 0, sent: 0, skipped: 0, received: 0, bad: 0, late: 0,
      lost: 0, decoded: 0, loud: 0, peak: 0, level: 0, depthMs: 0, underruns: 0, trimmedMs: 0 };
    this.onBinary = ({ detail }) => this.receive(detail);
    VoiceCall.current = this;
  }

  // Start both directions with session_start's srtp_profile, tx_key and
  // rx_key. Hearing starts even when the microphone cannot be opened.
  // With `resumed`, the stream of the same session goes on (see the top).
  async start({ srtp_profile: profile, tx_key: txKey, rx_key: rxKey, session_id: session,
    resumed }) {
    this.session = session;
    const was = resumed && [carried, storedCarry()].find((c) => c?.session === session);
    if (was) {
      this.ssrc = was.ssrc;
      this.seq = was.seq;
      this.tsBase = (was.ts + Math.round(Math.max(0, Date.now() - was.at) * RATE / 1000)) >>> 0;
      this.muted = Boolean(was.muted);   // the server still has us muted
    }
    const ac = unlockVoice();
    worklet ??= ac.audioWorklet.addModule('/static/voice-worklet.js');
    [this.tx, this.rx] = await Promise.all([createSrtp(profile, txKey, 'tx'),
      createSrtp(profile, rxKey, 'rx'), worklet]);
    if (this.closed) return;
    this.player = new AudioWorkletNode(ac, 'earshot-playback',
      { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
    this.player.port.onmessage = ({ data }) => Object.assign(this.stats, data);
    this.player.connect(ac.destination);
    this.decoder = new AudioDecoder({ output: (d) => this.play(d), error: (e) => this.fail(e) });
    this.decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1 });
    this.socket.addEventListener('binary', this.onBinary);
    await this.openMicrophone();
  }

  // (Re)open the microphone; the outcome arrives as a 'mic' event.
  async openMicrophone() {
    this.closeMicrophone();
    this.setMic('opening');
    let stream;
    try {
      stream = await openMic();
    } catch (err) {
      if (!this.closed) this.setMic(micProblem(err));
      return;
    }
    if (this.closed) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.stream = stream;
    const track = stream.getAudioTracks()[0];
    track.addEventListener('ended', () => {
      if (this.stream !== stream) return;
      this.closeMicrophone();
      this.setMic('ended');
    });
    this.encoder = new AudioEncoder({ output: (c) => this.send(c), error: (e) => this.fail(e) });
    this.encoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: BITRATE,
      opus: { frameDuration: 20000, usedtx: false } });
    this.capture = new AudioWorkletNode(audio, 'earshot-capture', { numberOfOutputs: 0 });
    this.capture.port.onmessage = ({ data }) => this.captured(data.pcm, data.level);
    this.source = audio.createMediaStreamSource(stream);
    this.source.connect(this.capture);
    this.marker = true;
    this.setMic('live');
  }

  closeMicrophone() {
    if (this.capture) {
      this.capture.port.postMessage('stop');
      this.source.disconnect();
      this.capture = null;
    }
    if (this.encoder && this.encoder.state !== 'closed') this.encoder.close();
    this.encoder = null;
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.stats.level = 0;
  }

  setMic(state) {
    this.mic = state;
    this.dispatchEvent(new CustomEvent('mic', { detail: state }));
  }

  // A muted call sends nothing (the server is told, so no "can't hear
  // you"); the RTP clock runs on, so the other side sees the pause.
  setMuted(on) {
    this.muted = on;
    if (on) this.marker = true;
    this.socket.send({ type: 'mute', on });
  }

  captured(pcm, level) {
    const n = this.frames++;
    this.stats.captured++;
    this.stats.level = this.muted ? 0 : level;
    if (this.muted || !this.encoder || this.encoder.state !== 'configured') return;
    if (this.encoder.encodeQueueSize > MAX_ENCODE_QUEUE) {
      this.stats.skipped++;
      return;
    }
    this.encoder.encode(new AudioData({ format: 'f32-planar', sampleRate: RATE, numberOfFrames: FRAME,
      numberOfChannels: 1, timestamp: n * 20000, data: pcm }));
  }

  send(chunk) {
    this.stats.encoded++;
    if (this.closed) return;
    if (this.socket.bufferedAmount() > MAX_BUFFERED) {   // the network is behind: drop, don't queue
      this.stats.skipped++;
      this.marker = true;
      return;
    }
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    const ts = this.tsBase + Math.round(chunk.timestamp * RATE / 1e6);
    const head = rtpHeader(this.seq, ts, this.ssrc, this.marker);
    this.seq = (this.seq + 1) & 0xffff;
    this.marker = false;
    const rtp = new Uint8Array(12 + payload.length);
    rtp.set(head);
    rtp.set(payload, 12);
    // Protect at once (srtp.js reserves the index synchronously), send in order.
    const sealed = this.tx.protect(rtp);
    this.outChain = this.outChain.then(() => sealed).then((srtp) => {
      if (!this.closed && this.socket.sendBinary(srtp)) this.stats.sent++;
    }, (e) => this.fail(e));
  }

  receive(buf) {
    this.stats.received++;
    const opened = this.rx.unprotect(new Uint8Array(buf));
    this.inChain = this.inChain.then(() => opened).then((rtp) => this.decode(rtp));
  }

  decode(rtp) {
    if (this.closed) return;
    const payload = rtp && rtpPayload(rtp);
    if (!payload) {
      this.stats.bad++;
      return;
    }
    const seq = (rtp[2] << 8) | rtp[3];
    if (this.lastSeq >= 0) {
      const ahead = (seq - this.lastSeq) & 0xffff;
      if (ahead === 0 || ahead >= 0x8000) {   // older than what is already playing
        this.stats.late++;
        return;
      }
      this.stats.lost += ahead - 1;
    }
    this.lastSeq = seq;
    this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: this.stats.decoded * 20000,
      data: payload }));
  }

  play(data) {
    const pcm = new Float32Array(data.numberOfFrames);
    data.copyTo(pcm, { planeIndex: 0, format: 'f32-planar' });
    data.close();
    if (this.closed) return;
    let sum = 0;
    for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
    const rms = Math.sqrt(sum / pcm.length);
    this.stats.decoded++;
    if (rms > LOUD) this.stats.loud++;
    this.stats.peak = Math.max(this.stats.peak, rms);
    this.player.port.postMessage(pcm, [pcm.buffer]);
  }

  // Where the stream stands now, for a call that goes on after a resume.
  position() {
    return { session: this.session, ssrc: this.ssrc, seq: this.seq,
      ts: (this.tsBase + this.frames * FRAME) >>> 0, at: Date.now(), muted: this.muted };
  }

  fail(err) {
    if (this.closed) return;
    console.warn('earshot voice:', err);
    this.dispatchEvent(new CustomEvent('failed', { detail: String(err?.message || err) }));
  }

  stop() {
    if (this.closed) return;
    if (this.session) carried = this.position();
    this.closed = true;
    this.socket.removeEventListener('binary', this.onBinary);
    this.closeMicrophone();
    if (this.player) {
      this.player.port.postMessage('stop');
      this.player.disconnect();
    }
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
  }
}
