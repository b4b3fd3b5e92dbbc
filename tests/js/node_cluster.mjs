// A Node socket.io server with @socket.io/redis-adapter and a shardio gateway on one Redis.
// Usage: node node_cluster.mjs <redis-url> <shardio-url>. Prints "ok" when every check holds.
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, shardioUrl] = process.argv.slice(2);
await runMain(async () => {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({ adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
  io.on("connection", (socket) => socket.join("node-room"));
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  const nodeUrl = `http://127.0.0.1:${http.address().port}`;

  const onNode = await client(nodeUrl);
  const onShardio = await client(shardioUrl);
  assert.deepEqual(await onShardio.timeout(3000).emitWithAck("join", "room1"), { ok: true });
  onShardio.on("ask", (n, ack) => ack(`shardio-got-${n}`));

  // Node to shardio: a room broadcast, binary included.
  const fromNode = once(onShardio, "from-node");
  io.to("room1").emit("from-node", 1, Buffer.from([1, 2, 3]));
  const [n, bin] = await fromNode;
  assert.equal(n, 1);
  assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));

  // shardio to Node: the gateway publishes through the bridge.
  const fromShardio = once(onNode, "from-shardio");
  onShardio.emit("publish", { to: "node-room", event: "from-shardio", data: { hi: true } });
  assert.deepEqual(await fromShardio, [{ hi: true }]);

  // Requests Node sends and must get answers to before its timeout.
  const sockets = await io.fetchSockets();
  const ids = sockets.map((s) => s.id).sort();
  assert.deepEqual(ids, [onNode.id, onShardio.id].sort());
  const remote = sockets.find((s) => s.id === onShardio.id);
  assert.ok(remote.rooms.has("room1"), "rooms of the shardio socket");
  assert.equal(remote.handshake.query.transport, "websocket");
  assert.equal(typeof remote.handshake.issued, "number");
  assert.equal((await io.in("room1").fetchSockets()).length, 1);

  const rooms = await io.of("/").adapter.allRooms();
  assert.ok(rooms.has("room1") && rooms.has(onShardio.id), "allRooms includes shardio's rooms");

  // shardio's gateway registers no server-side handler: it answers null at once.
  const sse = await io.serverSideEmitWithAck("ping", 1);
  assert.deepEqual(sse, [null]);

  // Broadcast with acks reaching shardio's client: one count, then its ack.
  const acks = await io.timeout(3000).to("room1").emitWithAck("ask", 7);
  assert.deepEqual(acks, ["shardio-got-7"]);
  // Nobody in the room on shardio: a count of 0 must still come.
  assert.deepEqual(await io.timeout(3000).to("empty-room").emitWithAck("ask", 8), []);

  // Node moves shardio's socket between rooms (through Redis: emit to the room until the
  // socket is in it) and disconnects it.
  io.in(onShardio.id).socketsJoin("joined-by-node");
  const joined = once(onShardio, "after-join");
  const afterJoin = () => io.to("joined-by-node").emit("after-join", "yes");
  assert.deepEqual(await repeatUntil(joined, afterJoin, "socketsJoin to reach shardio"), ["yes"]);
  const gone = once(onShardio, "disconnect");
  io.in(onShardio.id).disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");

  onNode.disconnect();
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit()]);
}, 40000);
