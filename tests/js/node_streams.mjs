// A Node socket.io server with @socket.io/redis-streams-adapter 0.3, a streams emitter and a
// shardio gateway in --redis-mode streams, on one Redis.
// Usage: node node_streams.mjs <redis-url> <shardio-url>. Prints "ok" when every check holds.
//
// @socket.io/redis-streams-emitter is not on the npm registry (its package in the socket.io
// monorepo, packages/socket.io-redis-streams-emitter, has never been published), so `emit`
// below adds the entry its `BroadcastOperator.emit` adds, field for field: XADD <stream>
// MAXLEN ~ 10000 * uid emitter nsp <nsp> type 3 data {"packet":{type,data,nsp},"opts":{rooms,
// flags,except}}.
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, shardioUrl] = process.argv.slice(2);

/** The streams emitter's broadcast (lib/index.ts), for JSON data. */
function emitterEmit(redis, { rooms = [], except = [], nsp = "/" }, ev, ...args) {
  const data = JSON.stringify({
    packet: { type: 2, data: [ev, ...args], nsp },
    opts: { rooms, flags: {}, except },
  });
  return redis.xAdd("socket.io", "*", { uid: "emitter", nsp, type: "3", data }, {
    TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: 10000 },
  });
}

await runMain(async () => {
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const io = new Server({ adapter: createAdapter(redis) });
  io.on("connection", (socket) => {
    socket.join("node-room");
    socket.on("skip", () => socket.join("skip"));
  });
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  const nodeUrl = `http://127.0.0.1:${http.address().port}`;

  const onNode = await client(nodeUrl);
  const skipped = await client(nodeUrl);
  skipped.emit("skip");
  const onShardio = await client(shardioUrl);
  const outside = await client(shardioUrl);
  assert.deepEqual(await onShardio.timeout(3000).emitWithAck("join", "room1"), { ok: true });
  onShardio.on("ask", (n, ack) => ack(`shardio-got-${n}`));
  let leaked = 0;
  outside.on("from-node", () => { leaked += 1; });
  outside.on("from-emitter", () => { leaked += 1; });

  // Node's reader starts at "$" once its XREAD runs: wait for it to see shardio's entries.
  const first = once(onNode, "warm");
  await repeatUntil(first, () => onShardio.emit("publish", { event: "warm", data: 0 }),
    "shardio's broadcasts to reach Node");

  // Node to shardio: a room broadcast, binary included (base64 msgpack in the stream).
  const fromNode = once(onShardio, "from-node");
  io.to("room1").emit("from-node", 1, Buffer.from([1, 2, 3]));
  const [n, bin] = await fromNode;
  assert.equal(n, 1);
  assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
  // Node to shardio: namespace-wide, except room1.
  const wide = once(outside, "wide");
  io.except("room1").emit("wide", "all-but-room1");
  assert.deepEqual(await wide, ["all-but-room1"]);

  // shardio to Node: a room, except a room, namespace-wide.
  const fromShardio = once(onNode, "from-shardio");
  let skippedGot = 0;
  skipped.on("from-shardio", () => { skippedGot += 1; });
  onShardio.emit("publish", { to: "node-room", except: "skip", event: "from-shardio", data: { hi: true } });
  assert.deepEqual(await fromShardio, [{ hi: true }]);
  const everyone = once(skipped, "everyone");
  onShardio.emit("publish", { event: "everyone", data: 2 });
  assert.deepEqual(await everyone, [2]);
  assert.equal(skippedGot, 0, "except holds across machines");

  // Ephemeral requests on Pub/Sub, answered by shardio before Node's timeout.
  const sockets = await io.fetchSockets();
  const ids = sockets.map((s) => s.id).sort();
  assert.deepEqual(ids, [onNode.id, skipped.id, onShardio.id, outside.id].sort());
  const remote = sockets.find((s) => s.id === onShardio.id);
  assert.ok(remote.rooms.has("room1"), "rooms of the shardio socket");
  assert.equal((await io.in("room1").fetchSockets()).length, 1);
  assert.deepEqual(await io.serverSideEmitWithAck("ping", 1), [null]);
  assert.deepEqual(await io.timeout(3000).to("room1").emitWithAck("ask", 7), ["shardio-got-7"]);
  assert.deepEqual(await io.timeout(3000).to("empty-room").emitWithAck("ask", 8), []);

  // Room commands through the stream.
  io.in(onShardio.id).socketsJoin("joined-by-node");
  const joined = once(onShardio, "after-join");
  const afterJoin = () => io.to("joined-by-node").emit("after-join", "yes");
  assert.deepEqual(await repeatUntil(joined, afterJoin, "socketsJoin to reach shardio"), ["yes"]);

  // The streams emitter: a room, except, the namespace.
  const fromEmitter = once(onShardio, "from-emitter");
  await emitterEmit(redis, { rooms: ["room1"] }, "from-emitter", "hi");
  assert.deepEqual(await fromEmitter, ["hi"]);
  const emitterWide = once(outside, "emitter-wide");
  let roomGot = 0;
  onShardio.on("emitter-wide", () => { roomGot += 1; });
  await emitterEmit(redis, { except: ["room1"] }, "emitter-wide", 3);
  assert.deepEqual(await emitterWide, [3]);
  assert.equal(roomGot, 0, "the emitter's except holds");
  assert.equal(leaked, 0, "room broadcasts skip sockets outside the room");

  const gone = once(onShardio, "disconnect");
  io.in(onShardio.id).disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");
  assert.ok(outside.connected, "only the selected sockets are disconnected");

  for (const c of [onNode, skipped, outside]) c.disconnect();
  io.close();
  await redis.quit().catch(() => {});
}, 40000);
