// Connection state recovery with the npm socket.io-client against shardio's gateway
// (started with --recovery-window). Receivers join room "r" while a publisher sends numbered
// messages to it; each receiver's transport is cut abruptly (the WebSocket's TCP connection
// destroyed, no close frame) and the client reconnects by itself after `delayMs`.
// Usage: node recovery_client.mjs <url> <mode> [receivers] [delayMs] [publisherUrl]
// (the publisher connects to <publisherUrl>, another server sharing Redis, when given)
//   recover: every receiver is cut twice and comes back recovered each time, with its id,
//            and has every message exactly once and in order; prints "ok same=<n> cross=<n>"
//            (receivers that came back the first time on the shard of their session, and on
//            another one: those were kept by the shard they moved to the second time).
//   fresh:   every receiver comes back with a fresh session (new id, not recovered), and gets
//            the messages published after it is back; prints "ok".
//   clean:   a receiver that disconnects with socket.disconnect() and connects again is not
//            recovered; prints "ok".
//   forged:  CONNECTs with an unknown or malformed pid and offset get a normal new session;
//            prints "ok".
//   silent:  receivers cut before they got any message (socket.io-client then sends its pid
//            without an offset) come back recovered with every message published meanwhile;
//            prints "ok".
//   alone:   on a server of 2 shards, each receiver is the only member of its own room and on
//            the shard the publisher is not on; cut twice, it comes back (on its session's
//            shard or the other one) recovered with every message of its room exactly once
//            and in order, those published while it was away included; prints "ok same=<n>
//            cross=<n>" (returns to the shard that kept the session, and to the other).
//   takeover: a second client presents the pid and offset of a receiver whose connection the
//            server still holds (a stall it has not noticed): it gets that socket, with its id
//            and its room, and the old connection is closed; prints "ok".
import assert from "node:assert/strict";
import { client, runMain } from "./clients.mjs";

const url = process.argv[2];
const mode = process.argv[3];
const count = Number(process.argv[4] ?? 8);
const delayMs = Number(process.argv[5] ?? 2000);
const publisherUrl = process.argv[6] ?? url;
const reconnecting = {
  reconnection: true,
  reconnectionDelay: delayMs,
  reconnectionDelayMax: delayMs,
  randomizationFactor: 0,
};

/** The shard a socket or session id names (its first encoded byte). */
const shardOf = (id) => Buffer.from(id, "base64url")[0];

/** Cuts the client's transport abruptly: the TCP connection is destroyed, no close frame. */
const cut = (socket) => socket.io.engine.transport.ws.terminate();

const pad = "x".repeat(100);

/** Publishes {n, pad} to room "r" every 10 ms until `stop()`; `last()` is the last n sent. */
function publisher(pub) {
  let n = 0;
  let timer;
  const tick = () => {
    pub.emit("publish", { to: "r", event: "m", data: { n, pad } });
    n += 1;
  };
  timer = setInterval(tick, 10);
  return {
    sent: () => n,
    stop: () => clearInterval(timer),
  };
}

/** Receivers joined to room "r", recording the n of every message. */
async function receivers(extra = {}) {
  const all = await Promise.all(
    Array.from({ length: count }, () => client(url, { ...reconnecting, ...extra })),
  );
  return Promise.all(all.map(async (socket) => {
    assert.deepEqual(await socket.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
    const r = { socket, got: [], firstId: socket.id, reconnected: null };
    socket.on("m", (data, offset) => {
      assert.equal(typeof offset, "string", "a recoverable packet carries its offset");
      r.got.push(data.n);
    });
    return r;
  }));
}

/** Resolves once `r` has received `n` messages. */
const received = (r, n) => new Promise((resolve) => {
  const check = () => (r.got.length >= n ? resolve() : setTimeout(check, 5));
  check();
});

/** Cuts each receiver once it has a few messages, and resolves when all are back. */
function cutAndWaitBack(rs) {
  return Promise.all(rs.map(async (r, i) => {
    await received(r, r.got.length + 5 + i * 3);
    const back = new Promise((resolve) => r.socket.once("connect", resolve));
    cut(r.socket);
    await back;
    r.reconnected = {
      id: r.socket.id,
      recovered: r.socket.recovered,
      session: r.socket.io.engine.id,
    };
  }));
}

/** Stops the publisher once every receiver is back and has had more, then waits for all. */
async function finish(pub, rs) {
  const more = pub.sent() + 30;
  await new Promise((resolve) => {
    const check = () => (pub.sent() >= more ? resolve() : setTimeout(check, 10));
    check();
  });
  pub.stop();
  const last = pub.sent() - 1;
  await Promise.all(rs.map((r) => new Promise((resolve) => {
    const check = () => (r.got.includes(last) ? resolve() : setTimeout(check, 10));
    check();
  })));
  return last;
}

async function recover() {
  const rs = await receivers();
  const source = await client(publisherUrl);
  const pub = publisher(source);
  let same = 0;
  let cross = 0;
  for (const round of [1, 2]) {
    await cutAndWaitBack(rs);
    for (const [i, r] of rs.entries()) {
      assert.equal(r.reconnected.recovered, true, `receiver ${i} recovered in round ${round}`);
      assert.equal(r.reconnected.id, r.firstId, `receiver ${i} kept its id in round ${round}`);
      if (round === 1 && shardOf(r.reconnected.session) === shardOf(r.firstId)) same += 1;
      else if (round === 1) cross += 1;
    }
  }
  const last = await finish(pub, rs);
  for (const [i, r] of rs.entries()) {
    const want = Array.from({ length: last + 1 }, (_, n) => n);
    assert.deepEqual(r.got, want, `receiver ${i}: every message once, in order`);
  }
  [...rs.map((r) => r.socket), source].forEach((s) => s.disconnect());
  return `same=${same} cross=${cross}`;
}

async function fresh() {
  const rs = await receivers();
  const source = await client(url);
  const pub = publisher(source);
  await cutAndWaitBack(rs);
  // A fresh socket is in no room: it joins again, then must get what follows.
  await Promise.all(rs.map(async (r, i) => {
    assert.equal(r.reconnected.recovered, false, `receiver ${i} not recovered`);
    assert.notEqual(r.reconnected.id, r.firstId, `receiver ${i} has a new id`);
    assert.deepEqual(await r.socket.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
    r.joinedAt = r.got.length;
  }));
  const from = pub.sent();
  const last = await finish(pub, rs);
  for (const r of rs) {
    const after = r.got.filter((n) => n >= from);
    assert.deepEqual(after, Array.from({ length: last + 1 - from }, (_, k) => from + k));
  }
  [...rs.map((r) => r.socket), source].forEach((s) => s.disconnect());
  return "";
}

async function clean() {
  const rs = await receivers();
  const source = await client(url);
  const pub = publisher(source);
  await Promise.all(rs.map(async (r) => {
    await received(r, 5);
    r.socket.disconnect();
    const back = new Promise((resolve) => r.socket.once("connect", resolve));
    r.socket.connect();
    await back;
    assert.equal(r.socket.recovered, false, "a clean disconnect is not recoverable");
    assert.notEqual(r.socket.id, r.firstId);
  }));
  pub.stop();
  [...rs.map((r) => r.socket), source].forEach((s) => s.disconnect());
  return "";
}

async function forged() {
  const shapes = [
    // The form of a real pid, on each shard: nobody keeps it.
    ...[0, 1, 2, 3].map((shard) => ({
      pid: Buffer.concat([Buffer.from([shard]), Buffer.alloc(14, 7)]).toString("base64url"),
      offset: "1",
    })),
    { pid: "not-a-pid", offset: "1" },
    { pid: "AAAAAAAAAAAAAAAAAAAA", offset: "zz" },
    { pid: 12, offset: ["x"] },
  ];
  for (const auth of shapes) {
    const s = await client(url, { auth });
    assert.equal(s.recovered, false);
    assert.equal(typeof s.id, "string");
    assert.deepEqual(await s.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
    s.disconnect();
  }
  return "";
}

async function takeover() {
  const [r] = await receivers();
  const source = await client(publisherUrl);
  const pub = publisher(source);
  await received(r, 5);
  const gone = new Promise((resolve) => r.socket.once("disconnect", resolve));
  const auth = { pid: r.socket._pid, offset: r.socket._lastOffset };
  const heir = await client(url, { auth });
  assert.equal(heir.id, r.firstId, "the heir has the socket's id");
  await gone;
  const got = [];
  heir.on("m", (data) => got.push(data.n));
  await new Promise((resolve) => {
    const check = () => (got.length >= 3 ? resolve() : setTimeout(check, 5));
    check();
  });
  pub.stop();
  [heir, source].forEach((s) => s.disconnect());
  return "";
}

async function silent() {
  const rs = await receivers();
  const source = await client(publisherUrl);
  await Promise.all(rs.map(async (r) => {
    const back = new Promise((resolve) => r.socket.once("connect", resolve));
    cut(r.socket);
    r.back = back;
  }));
  // While they are away: 20 messages, acknowledged so that all are out before they return.
  for (let n = 0; n < 20; n += 1) {
    const ok = await source.timeout(3000).emitWithAck("publish", { to: "r", event: "m", data: { n, pad } });
    assert.deepEqual(ok, { ok: true });
  }
  await Promise.all(rs.map((r) => r.back));
  const want = Array.from({ length: 20 }, (_, n) => n);
  await Promise.all(rs.map((r, i) => new Promise((resolve) => {
    const check = () => (r.got.length >= 20 ? resolve() : setTimeout(check, 10));
    check();
  }).then(() => {
    assert.equal(r.socket.recovered, true, `receiver ${i} recovered`);
    assert.equal(r.socket.id, r.firstId);
    assert.deepEqual(r.got, want, `receiver ${i}: the 20 messages once, in order`);
  })));
  [...rs.map((r) => r.socket), source].forEach((s) => s.disconnect());
  return "";
}

async function alone() {
  const source = await client(publisherUrl);
  const pubShard = shardOf(source.io.engine.id);
  // Receivers on the other shard than the publisher's, each alone in its room.
  const rs = [];
  for (let tries = 0; rs.length < count && tries < count * 20; tries += 1) {
    const socket = await client(url, reconnecting);
    if (shardOf(socket.io.engine.id) === pubShard) {
      socket.disconnect();
      continue;
    }
    const room = `alone-${rs.length}`;
    assert.deepEqual(await socket.timeout(3000).emitWithAck("join", [room]), { ok: true });
    const r = { socket, room, got: [], firstId: socket.id };
    socket.on("m", (data, offset) => {
      assert.equal(typeof offset, "string", "a recoverable packet carries its offset");
      r.got.push(data.n);
    });
    rs.push(r);
  }
  assert.equal(rs.length, count, "receivers on the publisher's other shard");
  let n = 0;
  const timer = setInterval(() => {
    for (const r of rs) source.emit("publish", { to: r.room, event: "m", data: { n, pad } });
    n += 1;
  }, 20);
  let same = 0;
  let cross = 0;
  for (const round of [1, 2]) {
    await Promise.all(rs.map(async (r, i) => {
      await received(r, r.got.length + 3 + i);
      const before = shardOf(r.socket.io.engine.id);
      const back = new Promise((resolve) => r.socket.once("connect", resolve));
      cut(r.socket);
      await back;
      assert.equal(r.socket.recovered, true, `receiver ${i} recovered in round ${round}`);
      assert.equal(r.socket.id, r.firstId, `receiver ${i} kept its id in round ${round}`);
      if (shardOf(r.socket.io.engine.id) === before) same += 1;
      else cross += 1;
    }));
  }
  const more = n + 20;
  await new Promise((resolve) => {
    const check = () => (n >= more ? resolve() : setTimeout(check, 10));
    check();
  });
  clearInterval(timer);
  const last = n - 1;
  await Promise.all(rs.map((r) => new Promise((resolve) => {
    const check = () => (r.got.includes(last) ? resolve() : setTimeout(check, 10));
    check();
  })));
  const want = Array.from({ length: last + 1 }, (_, k) => k);
  for (const [i, r] of rs.entries()) {
    assert.deepEqual(r.got, want, `receiver ${i}: every message once, in order`);
  }
  [...rs.map((r) => r.socket), source].forEach((s) => s.disconnect());
  return `same=${same} cross=${cross}`;
}

const modes = { recover, alone, fresh, clean, forged, takeover, silent };
await runMain(async () => {
  const detail = await modes[mode]();
  if (detail) console.log(detail);
}, 40000);
