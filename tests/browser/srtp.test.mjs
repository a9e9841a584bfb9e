// srtp.test.mjs - client-demo/web/srtp.js in Chromium's WebCrypto against
// the known answers pinned in tests/unit/test_media.c (RFC 3711 B.3 key
// derivation; libsrtp 2.5.0's output for RFC 7714's packet under a fixed
// master key, both profiles), an independent Node (OpenSSL) reference for
// packets after a ROC rollover, and the receiver's rules: tampering,
// replay, the window, one SSRC per key, concurrent calls. Also times 1000
// packets each way (reported as test diagnostics).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { launch, startServer } from './lib.mjs';

// The inputs of test_media.c.
const RTP_HEX = '8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 '
  + '20646976 69736120 696e2070 61727465 73207472 6573';
const GCM_MASTER = '000102030405060708090a0b0c0d0e0f517569642070726f2071756f';
const CM_MASTER = 'E1F97A0D3E018BE0D64FA32C06DE41390EC675AD498AFEEBB6960B3AABE6';
const GCM_WANT = '8040f17b 8041f8d3 5501a0b2 '
  + '92cb0ecf f0a0db18 8f7bff6b 523933aa cef8ae95 85ed378a '
  + '627836cb 2d6a731d 6c3490d9 2538 '
  + '7db18c06 61762d59 e50ad553 d241535a';
const CM_WANT = '8040f17b 8041f8d3 5501a0b2 '
  + '46be7450 9aaa5ce4 310b26d9 5e135249 979cd7bc 38109ee0 '
  + '71f7bf3a a8495d6d d41778d0 2641 '
  + 'cbe12652 3e4fe97e 1d91';

const hex = (s) => s.replace(/\s+/g, '').toLowerCase();
const b64 = (h) => Buffer.from(hex(h), 'hex').toString('base64');

// Independent reference in Node's OpenSSL, as in test_media.c.
function kdf(master, salt, label, len) {
  const iv = Buffer.alloc(16);
  salt.copy(iv);
  iv[7] ^= label;
  const c = createCipheriv('aes-128-ctr', master, iv);
  return Buffer.concat([c.update(Buffer.alloc(len)), c.final()]);
}
function refProtect(profile, masterHex, roc, pkt) {
  const m = Buffer.from(hex(masterHex), 'hex');
  const mk = m.subarray(0, 16);
  const ms = m.subarray(16);
  const header = pkt.subarray(0, 12);
  const payload = pkt.subarray(12);
  const rocB = Buffer.alloc(4);
  rocB.writeUInt32BE(roc);
  if (profile === 'aead_aes_128_gcm') {
    const sk = kdf(mk, ms, 0, 16);
    const ss = kdf(mk, ms, 2, 12);
    const iv = Buffer.concat([Buffer.alloc(2), pkt.subarray(8, 12), rocB, pkt.subarray(2, 4)]);
    for (let i = 0; i < 12; i++) iv[i] ^= ss[i];
    const c = createCipheriv('aes-128-gcm', sk, iv);
    c.setAAD(header);
    const ct = Buffer.concat([c.update(payload), c.final()]);
    return Buffer.concat([header, ct, c.getAuthTag()]).toString('hex');
  }
  const sk = kdf(mk, ms, 0, 16);
  const ak = kdf(mk, ms, 1, 20);
  const ss = kdf(mk, ms, 2, 14);
  const iv = Buffer.alloc(16);
  ss.copy(iv);
  for (let i = 0; i < 4; i++) iv[4 + i] ^= pkt[8 + i];
  for (let i = 0; i < 4; i++) iv[8 + i] ^= rocB[i];
  iv[12] ^= pkt[2];
  iv[13] ^= pkt[3];
  const c = createCipheriv('aes-128-ctr', sk, iv);
  const portion = Buffer.concat([header, c.update(payload), c.final()]);
  const tag = createHmac('sha1', ak).update(Buffer.concat([portion, rocB])).digest();
  return Buffer.concat([portion, tag.subarray(0, 10)]).toString('hex');
}

let server;
let browser;
let page;

before(async () => {
  server = await startServer();
  browser = await launch();
  page = await browser.context.newPage();
  await page.goto(`${server.base}/`);
});

after(async () => {
  await browser?.close();
  if (server) assert.equal(await server.stop(), 0, server.log());
});

test('RFC 3711 B.3 key derivation', async () => {
  const got = await page.evaluate(async () => {
    const m = await import('/static/srtp.js');
    const h = (s) => Uint8Array.from(s.match(/../g), (x) => parseInt(x, 16));
    const x = (b) => Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    const mk = h('e1f97a0d3e018be0d64fa32c06de4139');
    const ms = h('0ec675ad498afeebb6960b3aabe6');
    return {
      key: x(await m._deriveForTest(mk, ms, 0, 16)),
      salt: x(await m._deriveForTest(mk, ms, 2, 14)),
      auth: x(await m._deriveForTest(mk, ms, 1, 20)),
    };
  });
  assert.deepEqual(got, {
    key: hex('C61E7A93744F39EE10734AFE3FF7A087'),
    salt: hex('30CBBC08863D8C85D49DB34A9AE1'),
    auth: hex('CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4'),
  });
});

// Runs in the page: the known answer, then the receiver's rules.
async function rules([profile, key, rtpHex]) {
  const m = await import('/static/srtp.js');
  const h = (s) => Uint8Array.from(s.match(/../g), (x) => parseInt(x, 16));
  const x = (b) => (b === null ? null : Array.from(b, (v) => v.toString(16).padStart(2, '0')).join(''));
  const withSeq = (p, seq, ssrc) => {
    const q = p.slice();
    q[2] = seq >> 8; q[3] = seq & 0xff;
    if (ssrc !== undefined) new DataView(q.buffer).setUint32(8, ssrc);
    return q;
  };
  const rtp = h(rtpHex);
  const tx = await m.createSrtp(profile, key, 'tx');
  const rx = await m.createSrtp(profile, key, 'rx');
  const r = {};
  const first = await tx.protect(rtp);
  r.protected = x(first);
  r.recovered = x(await rx.unprotect(first));
  r.replay = x(await rx.unprotect(first));
  r.repeatTx = await tx.protect(rtp).then(() => 'protected', (e) => e.message);

  const next = await tx.protect(withSeq(rtp, 0xf17c));
  r.tamper = [];
  for (const at of [1, 20, next.length - 1]) {           // header, payload, tag
    const bad = next.slice();
    bad[at] ^= 0x01;
    r.tamper.push(x(await rx.unprotect(bad)));
  }
  r.afterTamper = x(await rx.unprotect(next)) === x(withSeq(rtp, 0xf17c));

  // Same key, other SSRC: authenticates, yet is refused.
  const tx2 = await m.createSrtp(profile, key, 'tx');
  const other = await tx2.protect(withSeq(rtp, 0xf17d, 0x12345678));
  r.otherSsrc = x(await rx.unprotect(other));
  r.otherSsrcTx = await tx.protect(withSeq(rtp, 0xf17d, 0x12345678)).then(
    () => 'protected', (e) => e.message);

  // Across the ROC rollover, with reordering inside the window.
  const seqs = [];
  for (let s = 0xf17d; s < 0x10000 + 40; s++) seqs.push(s & 0xffff);
  const prot = [];
  for (const s of seqs) prot.push(await tx.protect(withSeq(rtp, s)));
  r.afterWrap = x(prot[seqs.indexOf(0)]);
  r.beforeWrap = x(prot[seqs.indexOf(0xffff)]);
  const order = prot.map((_, i) => i);
  for (let i = 0; i + 1 < order.length; i += 2) [order[i], order[i + 1]] = [order[i + 1], order[i]];
  let ok = 0;
  for (const i of order) if (x(await rx.unprotect(prot[i])) === x(withSeq(rtp, seqs[i]))) ok++;
  r.rolloverOk = ok === prot.length && prot.length > 3700;

  // Window edge (as libsrtp): 127 behind the highest is accepted once, 128
  // behind is too old.
  const tx3 = await m.createSrtp(profile, key, 'tx');
  const rx3 = await m.createSrtp(profile, key, 'rx');
  const p128 = await tx3.protect(withSeq(rtp, 1002));
  const p127 = await tx3.protect(withSeq(rtp, 1003));
  const top = await tx3.protect(withSeq(rtp, 1130));
  r.edge = [await rx3.unprotect(top), await rx3.unprotect(p128), await rx3.unprotect(p127),
    await rx3.unprotect(p127)].map((v) => v !== null);

  // Concurrent calls: 64 protects at once use 64 indices; the receiver takes
  // each once even when every packet arrives twice at the same time.
  const tx4 = await m.createSrtp(profile, key, 'tx');
  const rx4 = await m.createSrtp(profile, key, 'rx');
  const burst = await Promise.all(Array.from({ length: 64 }, (_, i) => tx4.protect(withSeq(rtp, 5000 + i))));
  r.distinct = new Set(burst.map((b) => x(b.subarray(2, 4)))).size;
  const dup = await Promise.all([...burst, ...burst].reverse().map((b) => rx4.unprotect(b)));
  r.concurrentAccepted = dup.filter((v) => v !== null).length;
  return r;
}

for (const [profile, master, want] of [
  ['aead_aes_128_gcm', GCM_MASTER, GCM_WANT],
  ['aes_cm_128_hmac_sha1_80', CM_MASTER, CM_WANT],
]) {
  test(`${profile}: libsrtp's bytes, and the receiver's rules`, async () => {
    const r = await page.evaluate(rules, [profile, b64(master), hex(RTP_HEX)]);
    assert.equal(r.protected, hex(want), 'protect must equal libsrtp 2.5.0 byte for byte');
    assert.equal(r.recovered, hex(RTP_HEX));
    assert.equal(r.replay, null, 'a replayed packet is dropped');
    assert.match(r.repeatTx, /repeated/, 'the sender refuses to reuse an index');
    assert.deepEqual(r.tamper, [null, null, null], 'tampered header, payload, tag');
    assert.equal(r.afterTamper, true, 'a failed forgery does not burn the index');
    assert.equal(r.otherSsrc, null, 'another SSRC under the same key is dropped');
    assert.match(r.otherSsrcTx, /one SSRC/);
    // After 0xffff the ROC is 1: checked against Node's OpenSSL.
    const pkt = (seq) => {
      const b = Buffer.from(hex(RTP_HEX), 'hex');
      b.writeUInt16BE(seq, 2);
      return b;
    };
    assert.equal(r.beforeWrap, refProtect(profile, master, 0, pkt(0xffff)));
    assert.equal(r.afterWrap, refProtect(profile, master, 1, pkt(0)));
    assert.equal(r.rolloverOk, true, 'every packet across the rollover, reordered');
    assert.deepEqual(r.edge, [true, false, true, false],
      'highest, 128 behind (too old), 127 behind (in), 127 behind again (replay)');
    assert.equal(r.distinct, 64);
    assert.equal(r.concurrentAccepted, 64);
  });
}

test('timing: 1000 packets each way in Chromium', async (t) => {
  const r = await page.evaluate(async ([gcmKey, cmKey]) => {
    const m = await import('/static/srtp.js');
    const out = {};
    for (const [profile, key] of [['aead_aes_128_gcm', gcmKey], ['aes_cm_128_hmac_sha1_80', cmKey]]) {
      const tx = await m.createSrtp(profile, key, 'tx');
      const rx = await m.createSrtp(profile, key, 'rx');
      const pkts = [];
      for (let i = 0; i < 1000; i++) {
        const p = new Uint8Array(12 + 60);       // a typical 20 ms Opus frame
        p.set([0x80, 111, i >> 8, i & 0xff, 0, 0, 0, 0, 0xca, 0xfe, 0, 1]);
        p.fill(i & 0xff, 12);
        pkts.push(p);
      }
      let t0 = performance.now();
      const prot = [];
      for (const p of pkts) prot.push(await tx.protect(p));
      const protectUs = (performance.now() - t0) * 1000 / pkts.length;
      t0 = performance.now();
      let ok = 0;
      for (const p of prot) if (await rx.unprotect(p)) ok++;
      const unprotectUs = (performance.now() - t0) * 1000 / prot.length;
      out[profile] = { protectUs, unprotectUs, ok };
    }
    return out;
  }, [b64(GCM_MASTER), b64(CM_MASTER)]);
  for (const [profile, v] of Object.entries(r)) {
    t.diagnostic(`${profile}: protect ${v.protectUs.toFixed(1)} us, unprotect ${v.unprotectUs.toFixed(1)} us per packet (72 B, sequential awaits)`);
    assert.equal(v.ok, 1000);
  }
});
