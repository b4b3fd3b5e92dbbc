// Connection state recovery across machines in Redis streams mode: a client whose transport is
// cut comes back on ANOTHER server sharing the Redis stream, shardio and Node mixed.
// Usage: node recovery_moves.mjs <redis-url> <mode> <X> <Y> <P> [receivers] [delayMs] [windowMs]
//   X, Y, P: the servers the receivers start on, move to, and the publisher is on. Each is the
//            URL of a running server (shardio in --redis-mode streams with --recovery-window),
//            or `node:<name>`: a socket.io 4.8 server started here with
//            @socket.io/redis-streams-adapter and connectionStateRecovery (maxDisconnectionDuration
//            = windowMs), whose `join` and `publish` handlers mirror shardio's gateway (one server
//            per distinct name, each its own machine: its own adapter and Redis connections).
//   receivers: how many (default 4); delayMs: how long a cut receiver stays away (default
//            1500); windowMs: the Node servers' window (default 30000).
// Modes:
//   move:  the receivers join room "r" on X; the publisher sends numbered messages to "r" and,
//          in turn, to each receiver's own id (a socket's own events: Node's socket.emit with
//          recovery on is a broadcast to the socket's id room) every 10 ms. Each receiver is cut
//          (no close frame) and comes back on Y, then is cut again and comes back on X: both
//          times recovered, with its id, still in "r", and over the whole run it gets every
//          message of "r" and of its id exactly once and in order, those sent while it was away
//          included. Prints "ok".
//   fresh: a receiver cut on X comes back on Y after the window: a fresh session (new id, not
//          recovered, in no room), which gets what is published after it joins again. Prints
//          "ok".
//   park:  a receiver on X joins room "r" and is cut, with no reconnection; once X has stored
//          its session (the key sio:session:<pid> exists), prints "sid=<sid> pid=<pid>", then
//          "ok" (Y and P are not used).
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, mode, xSpec, ySpec, pSpec] = process.argv.slice(2);
const count = Number(process.argv[7] ?? 4);
const delayMs = Number(process.argv[8] ?? 1500);
const windowMs = Number(process.argv[9] ?? 30000);

const reconnecting = {
  reconnection: true,
  reconnectionDelay: delayMs,
  reconnectionDelayMax: delayMs,
  randomizationFactor: 0,
};

/** Node servers started here: by name, their URLs, and what closes them. */
const nodes = new Map();
const nodeUrls = new Set();
const closers = [];

/** How long before a receiver reconnects to a Node server the publisher is held (see moveTo). */
const HOLD_MS = 300;

/**
 * A socket.io server with the streams adapter and recovery, on its own Redis connections, with
 * the gateway's `join` and `publish`: its URL.
 */
async function nodeServer() {
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const io = new Server({
    adapter: createAdapter(redis),
    connectionStateRecovery: { maxDisconnectionDuration: windowMs },
  });
  const rooms = (v) => (Array.isArray(v) ? v : [v]);
  io.on("connection", (socket) => {
    socket.on("join", (names, ack) => {
      socket.join(rooms(names));
      if (typeof ack === "function") ack({ ok: true });
    });
    socket.on("publish", ({ to, except, event, data }, ack) => {
      let op = socket.broadcast;
      if (to != null) op = op.to(rooms(to));
      if (except != null) op = op.except(rooms(except));
      op.emit(event, data);
      if (typeof ack === "function") ack({ ok: true });
    });
  });
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  closers.push(async () => {
    io.close();
    await redis.quit().catch(() => {});
  });
  const url = `http://127.0.0.1:${http.address().port}`;
  nodeUrls.add(url);
  return url;
}

/** The URL of the server `spec` names, starting it when it is a Node server not yet started. */
async function serverUrl(spec) {
  if (!spec.startsWith("node:")) return spec;
  if (!nodes.has(spec)) nodes.set(spec, nodeServer());
  return nodes.get(spec);
}

/** Cuts the client's transport abruptly: the TCP connection is destroyed, no close frame. */
const cut = (socket) => socket.io.engine.transport.ws.terminate();

/** Resolves once `check()` holds, polling every 5 ms (the script's own limit bounds it). */
const until = (check) => new Promise((resolve) => {
  const poll = () => (check() ? resolve() : setTimeout(poll, 5));
  poll();
});

/** The port of a server URL, and the port a client's current transport is connected to. */
const portOf = (url) => Number(new URL(url).port);
const connectedPort = (socket) => Number(socket.io.engine.port);

/**
 * Waits until every server of `urls` delivers what `source` publishes: a Node server's stream
 * reader starts at "$" once its first XREAD runs, and would miss what comes before.
 */
async function warm(source, urls) {
  const probes = await Promise.all(urls.map((u) => client(u)));
  await Promise.all(probes.map(async (p) => {
    assert.deepEqual(await p.timeout(3000).emitWithAck("join", "warm"), { ok: true });
  }));
  const all = Promise.all(probes.map((p) => once(p, "warm")));
  await repeatUntil(all, () => source.emit("publish", { to: "warm", event: "warm", data: 0 }),
    "every server to deliver the stream");
  probes.forEach((p) => p.disconnect());
}

/** A receiver on `url`, in room "r", recording the n of each event `m` (room) and `own`. */
async function receiver(url) {
  const socket = await client(url, reconnecting);
  assert.deepEqual(await socket.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
  const r = { socket, firstId: socket.id, room: [], own: [], away: [], returns: [] };
  for (const [event, list] of [["m", r.room], ["own", r.own]]) {
    socket.on(event, (data, offset) => {
      assert.match(offset, /^[0-9]+-[0-9]+$/, `${event}: a recoverable packet has its entry id`);
      list.push(data.n);
    });
  }
  return r;
}

/**
 * Publishes from `source` every 10 ms, unless held: {n} to room "r", and {n} as `own` to the id
 * of receiver n % rs.length; records, for each receiver, the own events sent while it is away.
 */
function publisher(source, rs) {
  let n = 0;
  let holds = 0;
  const timer = setInterval(() => {
    if (holds > 0) return;
    source.emit("publish", { to: "r", event: "m", data: { n } });
    const r = rs[n % rs.length];
    source.emit("publish", { to: r.firstId, event: "own", data: { n } });
    if (r.gone) r.away.push(n);
    n += 1;
  }, 10);
  return {
    sent: () => n,
    stop: () => clearInterval(timer),
    hold: () => {
      holds += 1;
      return () => { holds -= 1; };
    },
  };
}

/** What `got` lacks, repeats or has out of order against `want` (increasing numbers). */
function differences(got, want) {
  const seen = new Set();
  const repeated = got.filter((n) => seen.has(n) || !seen.add(n));
  const missing = want.filter((n) => !seen.has(n));
  const disordered = got.filter((n, k) => k > 0 && n < got[k - 1]);
  return `missing ${JSON.stringify(missing)}, repeated ${JSON.stringify(repeated)}, `
    + `before a smaller one ${JSON.stringify(disordered)}`;
}

/**
 * Cuts `r` once it has had `extra` messages, points its Manager at `to` before it reconnects
 * (the Manager builds each new Engine from `uri`), and resolves when it is back. When `to` is a
 * Node server, `pub` is held from HOLD_MS before the reconnection until the receiver is back:
 * @socket.io/redis-streams-adapter 0.3.1 loses an entry added between its last XRANGE of the
 * missed packets and the socket joining its rooms (its reader delivers it to rooms the socket
 * is not in yet; seen in about one run in three of 8 restores). Moves to shardio are not held.
 */
async function moveTo(r, to, extra, pub) {
  await until(() => r.room.length >= extra);
  // The last n it has once back (those restored): read as it connects, before what follows.
  const back = new Promise((resolve) => r.socket.once("connect", () => resolve(r.room.at(-1))));
  r.socket.io.uri = to;
  r.gone = true;
  const before = r.room.at(-1);
  cut(r.socket);
  let release = () => {};
  const hold = () => { release = pub.hold(); };
  const holding = nodeUrls.has(to) && setTimeout(hold, delayMs - HOLD_MS);
  const restored = await back;
  clearTimeout(holding);
  release();
  r.gone = false;
  r.returns.push([before, restored]);
  assert.equal(connectedPort(r.socket), portOf(to), "back on the server it was sent to");
}

async function move(x, y, p) {
  const source = await started(x, y, p);
  const rs = [];
  for (let i = 0; i < count; i += 1) rs.push(await receiver(x));
  const pub = publisher(source, rs);
  for (const [round, to] of [[1, y], [2, x]]) {
    await Promise.all(rs.map(async (r, i) => {
      await moveTo(r, to, r.room.length + 5 + i * 3, pub);
      assert.equal(r.socket.recovered, true, `receiver ${i} recovered in round ${round}`);
      assert.equal(r.socket.id, r.firstId, `receiver ${i} kept its id in round ${round}`);
    }));
  }
  const more = pub.sent() + 30;
  await until(() => pub.sent() >= more);
  pub.stop();
  const last = pub.sent() - 1;
  await Promise.all(rs.map((r) => until(() => r.room.includes(last))));
  const upTo = (k) => Array.from({ length: k + 1 }, (_, n) => n);
  for (const [i, r] of rs.entries()) {
    // On failure: what differs, and the last n before each cut and once back (restored).
    const returns = `returns ${JSON.stringify(r.returns)}`;
    const room = upTo(last);
    assert.deepEqual(r.room, room, `receiver ${i}: every message of "r" once, in order; `
      + `${differences(r.room, room)}; ${returns}`);
    const own = upTo(last).filter((n) => n % rs.length === i);
    await until(() => r.own.length >= own.length);
    assert.deepEqual(r.own, own, `receiver ${i}: every event to its id once, in order; `
      + `${differences(r.own, own)}; ${returns}`);
    assert.ok(r.away.length > 0, `receiver ${i}: events to its id were sent while it was away`);
  }
  rs.forEach((r) => r.socket.disconnect());
  source.disconnect();
}

async function fresh(x, y, p) {
  const source = await started(x, y, p);
  const rs = [];
  for (let i = 0; i < count; i += 1) rs.push(await receiver(x));
  const pub = publisher(source, rs);
  await Promise.all(rs.map(async (r, i) => {
    await moveTo(r, y, r.room.length + 5, pub);
    assert.equal(r.socket.recovered, false, `receiver ${i} is not recovered after the window`);
    assert.notEqual(r.socket.id, r.firstId, `receiver ${i} has a new id`);
    // A fresh socket is in no room: it joins again, then gets what follows.
    assert.deepEqual(await r.socket.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
  }));
  const from = pub.sent();
  await until(() => pub.sent() >= from + 30);
  pub.stop();
  const last = pub.sent() - 1;
  await Promise.all(rs.map((r) => until(() => r.room.includes(last))));
  for (const [i, r] of rs.entries()) {
    const after = r.room.filter((n) => n >= from);
    assert.deepEqual(after, Array.from({ length: last + 1 - from }, (_, k) => from + k),
      `receiver ${i}: what follows its new join, once, in order`);
  }
  rs.forEach((r) => r.socket.disconnect());
  source.disconnect();
}

async function park(x) {
  const socket = await client(x);
  assert.deepEqual(await socket.timeout(3000).emitWithAck("join", ["r"]), { ok: true });
  const { id, _pid: pid } = socket;
  assert.equal(typeof pid, "string", "the CONNECT reply carries a pid");
  cut(socket);
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const deadline = Date.now() + 5000;
  while (!(await redis.exists(`sio:session:${pid}`))) {
    if (Date.now() > deadline) throw new Error(`no sio:session:${pid} within 5 s of the cut`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await redis.quit();
  console.log(`sid=${id} pid=${pid}`);
}

/** The publisher's client on `p`, once every server delivers what it publishes. */
async function started(x, y, p) {
  const source = await client(p);
  await warm(source, [...new Set([x, y, p])]);
  return source;
}

const modes = { move, fresh, park };
await runMain(async () => {
  assert.ok(modes[mode], `unknown mode ${mode}`);
  const [x, y, p] = await Promise.all([xSpec, ySpec, pSpec].map(serverUrl));
  await modes[mode](x, y, p);
  await Promise.all(closers.map((c) => c()));
}, 40000);
