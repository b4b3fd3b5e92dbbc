// A Node socket.io server with @socket.io/redis-adapter's sharded adapter on a Redis Cluster,
// beside shardio gateways in --redis-mode sharded. Every client joins rooms whose channels lie
// on different slots, and broadcasts cross every way: Node to each shardio, each shardio to
// Node and to the other shardios, plus Node's requests (fetchSockets, acks, serverSideEmit,
// socketsJoin) answered by shardio.
// Usage: node node_sharded.mjs <cluster-urls,...> <subscription-mode> <room,...> <shardio-url>...
// Prints "ok" when every check holds.
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { createCluster } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [urls, subscriptionMode, roomList, ...shardioUrls] = process.argv.slice(2);
const rooms = roomList.split(",");

await runMain(async () => {
  const pub = createCluster({ rootNodes: urls.split(",").map((url) => ({ url })) });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({
    adapter: createShardedAdapter(pub, sub, { subscriptionMode }),
  });
  // The same `join` as shardio's gateway.
  io.on("connection", (socket) => {
    socket.on("join", (room, ack) => {
      socket.join(room);
      ack({ ok: true });
    });
  });
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  const nodeUrl = `http://127.0.0.1:${http.address().port}`;

  const onNode = await client(nodeUrl);
  const onShardio = await Promise.all(shardioUrls.map((url) => client(url)));
  const everyone = [onNode, ...onShardio];
  for (const c of everyone) {
    assert.deepEqual(await c.timeout(3000).emitWithAck("join", rooms), { ok: true });
    c.on("ask", (n, ack) => ack(`${c.id}-${n}`));
  }

  // Node to each shardio, one room at a time (a shardio subscribes to a room's channel
  // shortly after its first member joins: repeat until it shows).
  for (const room of rooms) {
    const event = `from-node-${room}`;
    await Promise.all(
      onShardio.map((c) =>
        repeatUntil(once(c, event), () => io.to(room).emit(event, room), `${event} on ${c.io.uri}`),
      ),
    );
  }
  // With binary (msgpack on the wire), to the whole namespace.
  const bins = onShardio.map((c) => once(c, "bin"));
  io.emit("bin", Buffer.from([1, 2, 3]));
  for (const [data] of await Promise.all(bins)) {
    assert.deepEqual(Buffer.from(data), Buffer.from([1, 2, 3]));
  }

  // Each shardio to Node and to the other shardios, in every room.
  for (const [i, from] of onShardio.entries()) {
    for (const room of rooms) {
      const event = `from-shardio-${i}-${room}`;
      const others = everyone.filter((c) => c !== from);
      const got = Promise.all(others.map((c) => once(c, event)));
      from.emit("publish", { to: room, event, data: { i, room } });
      for (const [data] of await got) assert.deepEqual(data, { i, room });
    }
  }
  // shardio to Node with binary.
  const fromShardioBin = once(onNode, "shardio-bin");
  onShardio[0].emit("publish", { to: rooms[0], event: "shardio-bin", data: Buffer.from([7, 8]) });
  assert.deepEqual(Buffer.from((await fromShardioBin)[0]), Buffer.from([7, 8]));

  // Requests Node sends through the common channel, answered on its own channel.
  const sockets = await io.in(rooms[0]).fetchSockets();
  assert.deepEqual(sockets.map((s) => s.id).sort(), everyone.map((c) => c.id).sort());
  const remote = sockets.find((s) => s.id === onShardio[0].id);
  assert.ok(remote.rooms.has(rooms[1]), "rooms of a shardio socket");
  assert.equal(remote.handshake.query.transport, "websocket");

  const acks = await io.timeout(3000).to(rooms[1]).emitWithAck("ask", 7);
  assert.deepEqual(acks.sort(), everyone.map((c) => `${c.id}-7`).sort());
  assert.deepEqual(await io.timeout(3000).to("nobody-here").emitWithAck("ask", 8), []);

  // shardio's gateway registers no server-side handler: each server answers null.
  const sse = await io.serverSideEmitWithAck("ping", 1);
  assert.deepEqual(sse, onShardio.map(() => null));

  // Node moves a shardio socket into a room (a new channel on some slot) and reaches it there.
  io.in(onShardio[1].id).socketsJoin("joined-by-node");
  const joined = once(onShardio[1], "after-join");
  const afterJoin = () => io.to("joined-by-node").emit("after-join", "yes");
  assert.deepEqual(await repeatUntil(joined, afterJoin, "socketsJoin to reach shardio"), ["yes"]);
  const gone = once(onShardio[2], "disconnect");
  io.in(onShardio[2].id).disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");

  for (const c of everyone) c.disconnect();
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit()]);
}, 60000);
