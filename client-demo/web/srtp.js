// srtp.js - SRTP for one direction of a voice leg in WebCrypto: key
// derivation (RFC 3711 4.3.1), AEAD_AES_128_GCM (RFC 7714) and
// AES_CM_128_HMAC_SHA1_80 (RFC 3711), packet index (ROC) estimation, one
// SSRC per key and a 128-packet replay window; byte-compatible with the
// server's libsrtp (tests/unit/test_media.c pins the same known answers).
//
//   const tx = await createSrtp('aead_aes_128_gcm', session.tx_key, 'tx');
//   ws.send(await tx.protect(rtp));            // throws on misuse
//   const rx = await createSrtp(profile, session.rx_key, 'rx');
//   const rtp = await rx.unprotect(srtp);       // null: drop it
//
// direction: 'tx' (or 'outbound') gives { protect }, 'rx' (or 'inbound')
// gives { unprotect }.
//
// Concurrency: WebCrypto is asynchronous, so two packets can be in flight
// at once. Every decision about the packet index (estimate, replay check,
// reservation) is taken synchronously before the first await; a sender
// therefore never uses an index twice, and a receiver never accepts one
// packet twice, however the calls interleave.

export const PROFILES = {
  aead_aes_128_gcm: { saltLen: 12, tagLen: 16 },
  aes_cm_128_hmac_sha1_80: { saltLen: 14, tagLen: 10 },
};

const WINDOW = 128;           // replay window, packets
const SEQ_MEDIAN = 1 << 15;
const SEQ_MAX = 1 << 16;
const LABEL_KEY = 0x00;
const LABEL_AUTH = 0x01;
const LABEL_SALT = 0x02;

function fromBase64(b64) {
  let bin;
  try {
    bin = atob(b64);
  } catch {
    throw new Error('srtp: key is not base64');
  }
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// RFC 3711 4.3.1 with key_derivation_rate 0: the AES-CM keystream under
// the master key, IV = (master salt XOR label << 48) || 0x0000. A 12-byte
// (GCM) master salt is zero-padded to 14 (RFC 7714 section 11).
async function derive(masterKey, masterSalt, label, len) {
  const iv = new Uint8Array(16);
  iv.set(masterSalt);
  iv[7] ^= label;
  const out = await crypto.subtle.encrypt({ name: 'AES-CTR', counter: iv, length: 16 },
    masterKey, new Uint8Array(len));
  return new Uint8Array(out);
}

// Test-only: session key material from raw master key and salt bytes.
export async function _deriveForTest(masterKeyBytes, masterSaltBytes, label, len) {
  const mk = await crypto.subtle.importKey('raw', masterKeyBytes, 'AES-CTR', false,
    ['encrypt']);
  return derive(mk, masterSaltBytes, label, len);
}

// The RTP header's length (fixed part, CSRCs, extension), or -1 when the
// packet is not RTP version 2 or is too short for its own header.
function headerLength(p) {
  if (p.length < 12 || (p[0] >> 6) !== 2) return -1;
  let n = 12 + 4 * (p[0] & 0x0f);
  if (p[0] & 0x10) {
    if (p.length < n + 4) return -1;
    n += 4 + 4 * ((p[n + 2] << 8) | p[n + 3]);
  }
  return p.length < n ? -1 : n;
}

const ssrcOf = (p) => ((p[8] << 24) | (p[9] << 16) | (p[10] << 8) | p[11]) >>> 0;
const seqOf = (p) => (p[2] << 8) | p[3];

// The packet index state of one SSRC: the highest index accepted (48 bits,
// exact in a double) and which of the WINDOW below it were seen. Index
// estimation follows libsrtp 2.5.0 (srtp_rdbx_estimate_index), which is
// RFC 3711 3.3.1 plus one rule: while the highest index is at most 2^15 the
// ROC is taken as 0, so the first packet has ROC 0 whatever its sequence
// number.
class IndexState {
  constructor() {
    this.top = 0;
    this.seen = new Float64Array(WINDOW).fill(-1);  // seen[i % WINDOW] === i
    this.pending = new Set();                         // reserved, not yet authenticated
  }

  estimate(seq) {
    if (this.top <= SEQ_MEDIAN) return seq;
    const roc = Math.floor(this.top / SEQ_MAX);
    const local = this.top % SEQ_MAX;
    let guess = roc;
    if (local < SEQ_MEDIAN) {
      if (seq - local > SEQ_MEDIAN) guess = roc - 1;
    } else if (local - SEQ_MEDIAN > seq) {
      guess = roc + 1;
    }
    return guess < 0 ? -1 : guess * SEQ_MAX + seq;
  }

  // True when `index` is new: ahead of the window, or inside it and unseen.
  fresh(index) {
    if (index < 0) return false;
    if (index > this.top) return !this.pending.has(index);
    if (this.top - index >= WINDOW) return false;
    return this.seen[index % WINDOW] !== index && !this.pending.has(index);
  }

  commit(index) {
    this.seen[index % WINDOW] = index;
    if (index > this.top) this.top = index;
  }
}

function ivGcm(salt, ssrc, roc, seq) {
  // RFC 7714 section 8.1: (00 00 || SSRC || ROC || SEQ) XOR salt.
  const iv = new Uint8Array(12);
  const v = new DataView(iv.buffer);
  v.setUint32(2, ssrc);
  v.setUint32(6, roc);
  v.setUint16(10, seq);
  for (let i = 0; i < 12; i++) iv[i] ^= salt[i];
  return iv;
}

function ivCm(salt, ssrc, roc, seq) {
  // RFC 3711 4.1.1: (salt << 16) XOR (SSRC << 64) XOR (index << 16).
  const iv = new Uint8Array(16);
  iv.set(salt);
  const v = new DataView(iv.buffer);
  v.setUint32(4, v.getUint32(4) ^ ssrc);
  v.setUint32(8, v.getUint32(8) ^ roc);
  v.setUint16(12, v.getUint16(12) ^ seq);
  return iv;
}

function rocBytes(roc) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, roc);
  return b;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

// The cipher of one profile over session keys: seal(header, payload, ssrc,
// roc, seq) -> protected packet; open(...) -> payload or null.
async function gcmCipher(masterKey, masterSalt) {
  const raw = await derive(masterKey, masterSalt, LABEL_KEY, 16);
  const salt = await derive(masterKey, masterSalt, LABEL_SALT, 12);
  const key = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false,
    ['encrypt', 'decrypt']);
  raw.fill(0);
  return {
    async seal(header, payload, ssrc, roc, seq) {
      const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: ivGcm(salt, ssrc, roc, seq),
        additionalData: header, tagLength: 128 }, key, payload);
      return concat(header, new Uint8Array(ct));
    },
    async open(header, body, ssrc, roc, seq) {
      try {
        const pt = await crypto.subtle.decrypt({ name: 'AES-GCM',
          iv: ivGcm(salt, ssrc, roc, seq), additionalData: header, tagLength: 128 }, key, body);
        return new Uint8Array(pt);
      } catch {
        return null;   // OperationError: the tag did not verify
      }
    },
  };
}

async function cmCipher(masterKey, masterSalt) {
  const raw = await derive(masterKey, masterSalt, LABEL_KEY, 16);
  const rawAuth = await derive(masterKey, masterSalt, LABEL_AUTH, 20);
  const salt = await derive(masterKey, masterSalt, LABEL_SALT, 14);
  const key = await crypto.subtle.importKey('raw', raw, 'AES-CTR', false, ['encrypt']);
  const auth = await crypto.subtle.importKey('raw', rawAuth, { name: 'HMAC', hash: 'SHA-1' },
    false, ['sign']);
  raw.fill(0);
  rawAuth.fill(0);
  const ctr = (ssrc, roc, seq, data) => crypto.subtle.encrypt(
    { name: 'AES-CTR', counter: ivCm(salt, ssrc, roc, seq), length: 16 }, key, data);
  // RFC 3711 4.2: HMAC-SHA1 over the authenticated portion || ROC, 80 bits.
  const tag = async (portion, roc) => new Uint8Array(
    await crypto.subtle.sign('HMAC', auth, concat(portion, rocBytes(roc)))).subarray(0, 10);
  return {
    async seal(header, payload, ssrc, roc, seq) {
      const portion = concat(header, new Uint8Array(await ctr(ssrc, roc, seq, payload)));
      return concat(portion, await tag(portion, roc));
    },
    async open(header, body, ssrc, roc, seq) {
      const portion = concat(header, body.subarray(0, body.length - 10));
      const want = await tag(portion, roc);
      const got = body.subarray(body.length - 10);
      let diff = 0;
      for (let i = 0; i < 10; i++) diff |= want[i] ^ got[i];
      if (diff !== 0) return null;
      return new Uint8Array(await ctr(ssrc, roc, seq, body.subarray(0, body.length - 10)));
    },
  };
}

export async function createSrtp(profile, keyB64, direction) {
  const prof = PROFILES[profile];
  if (!prof) throw new Error(`srtp: unknown profile ${profile}`);
  const tx = direction === 'tx' || direction === 'outbound';
  if (!tx && direction !== 'rx' && direction !== 'inbound') {
    throw new Error(`srtp: direction must be tx or rx, not ${direction}`);
  }
  const master = fromBase64(keyB64);
  if (master.length !== 16 + prof.saltLen) {
    throw new Error(`srtp: ${profile} needs ${16 + prof.saltLen} key bytes, got ${master.length}`);
  }
  const masterKey = await crypto.subtle.importKey('raw', master.subarray(0, 16), 'AES-CTR',
    false, ['encrypt']);
  const masterSalt = master.slice(16);
  master.fill(0);
  const cipher = profile === 'aead_aes_128_gcm'
    ? await gcmCipher(masterKey, masterSalt) : await cmCipher(masterKey, masterSalt);

  let ssrc = null;             // the one SSRC of this key, from its first packet
  let confirmed = false;       // rx: a packet with that SSRC has authenticated
  const state = new IndexState();

  if (tx) {
    return {
      // RTP bytes -> SRTP bytes. Throws on a packet that is not RTP, on an
      // SSRC other than the first, and on an index already used (or older
      // than the window): protecting it again would reuse a nonce.
      async protect(rtp) {
        const hl = headerLength(rtp);
        if (hl < 0) throw new Error('srtp: not an RTP packet');
        const s = ssrcOf(rtp);
        if (ssrc === null) ssrc = s;
        else if (s !== ssrc) throw new Error('srtp: one SSRC per key');
        const seq = seqOf(rtp);
        const index = state.estimate(seq);
        if (!state.fresh(index)) throw new Error(`srtp: sequence number ${seq} repeated`);
        state.commit(index);                       // before any await
        return cipher.seal(rtp.slice(0, hl), rtp.slice(hl), s, Math.floor(index / SEQ_MAX), seq);
      },
    };
  }

  return {
    // SRTP bytes -> RTP bytes, or null (not RTP, other SSRC, replayed or
    // too old, authentication failed).
    async unprotect(srtp) {
      const hl = headerLength(srtp);
      if (hl < 0 || srtp.length < hl + prof.tagLen) return null;
      const s = ssrcOf(srtp);
      if (ssrc === null) ssrc = s;
      else if (s !== ssrc) return null;
      const seq = seqOf(srtp);
      const index = state.estimate(seq);
      if (!state.fresh(index)) return null;
      state.pending.add(index);                    // before any await
      const payload = await cipher.open(srtp.slice(0, hl), srtp.slice(hl), s,
        Math.floor(index / SEQ_MAX), seq);
      state.pending.delete(index);
      if (payload === null) {
        // A forged first packet must not claim the key's SSRC.
        if (!confirmed && state.pending.size === 0) ssrc = null;
        return null;
      }
      confirmed = true;
      state.commit(index);
      return concat(srtp.subarray(0, hl), payload);
    },
  };
}
