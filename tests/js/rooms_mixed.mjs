// A mixed cluster on one Redis: a shardio gateway with --redis-subscribe rooms (SUBSCRIBE per
// room), a Node socket.io server with @socket.io/redis-adapter (PSUBSCRIBE, Node's classic way)
// and @socket.io/redis-emitter. Room, socket-id and namespace broadcasts cross every way.
// Usage: node rooms_mixed.mjs <redis-url> <shardio-url>. Prints "ok" when every check holds.
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, shardioUrl] = process.argv.slice(2);

/** Nothing of `event` reaches `socket` while `action` runs and for 300 ms after it. */
async function never(socket, event, action) {
  let got = false;
  const mark = () => { got = true; };
  socket.on(event, mark);
  await action();
  // A fixed window on purpose: that nothing arrives is the check.
  await new Promise((r) => setTimeout(r, 300));
  socket.off(event, mark);
  assert.ok(!got, `${event} must not arrive`);
}

await runMain(async () => {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  const admin = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), admin.connect()]);
  const io = new Server({ adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
  io.on("connection", (socket) => socket.join("node-room"));
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  const emitter = new Emitter(pub);

  const onNode = await client(`http://127.0.0.1:${http.address().port}`);
  const onShardio = await client(shardioUrl);
  const outside = await client(shardioUrl);

  // How many connections subscribe to a room's channel; wait until it is `n`.
  const numsub = async (room) =>
    Number((await admin.sendCommand(["PUBSUB", "NUMSUB", `socket.io#/#${room}#`]))[1]);
  const subscribed = async (room, n) => {
    const deadline = Date.now() + 5000;
    while ((await numsub(room)) !== n) {
      if (Date.now() > deadline) throw new Error(`${room} never had ${n} subscribers`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  assert.deepEqual(await onShardio.timeout(3000).emitWithAck("join", "roomA"), { ok: true });
  // The gateway acknowledges a join once Redis has confirmed the room's subscription: Node's
  // broadcasts from now on reach the socket (the first one just below).
  assert.equal(await numsub("roomA"), 1, "subscribed when the join is acknowledged");
  // A socket's own-id room is subscribed as it connects; nothing acknowledges that.
  await subscribed(onShardio.id, 1);

  // Node to shardio: one room (its channel), binary included; outside is not in it.
  await never(outside, "n-room", async () => {
    const got = once(onShardio, "n-room");
    io.to("roomA").emit("n-room", 1, Buffer.from([1, 2, 3]));
    const [n, bin] = await got;
    assert.equal(n, 1);
    assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
  });
  // Node to one shardio socket by its id (the id room's channel).
  const byId = once(onShardio, "n-id");
  io.to(onShardio.id).emit("n-id", "me");
  assert.deepEqual(await byId, ["me"]);
  // Node to several rooms (the namespace channel), and to the whole namespace.
  const multi = once(onShardio, "n-multi");
  io.to(["roomA", "roomB"]).emit("n-multi", 2);
  assert.deepEqual(await multi, [2]);
  const all = [onShardio, outside, onNode].map((s) => once(s, "n-all"));
  io.emit("n-all", 3);
  for (const got of all) assert.deepEqual(await got, [3]);

  // The emitter to a room, and to everyone.
  await never(outside, "e-room", async () => {
    const got = once(onShardio, "e-room");
    emitter.to("roomA").emit("e-room", "hi", Buffer.from([9]));
    const [text, bin] = await got;
    assert.equal(text, "hi");
    assert.deepEqual(Buffer.from(bin), Buffer.from([9]));
  });
  const eAll = [onShardio, outside, onNode].map((s) => once(s, "e-all"));
  emitter.emit("e-all", 4);
  for (const got of eAll) assert.deepEqual(await got, [4]);

  // shardio to Node: a room of Node's, and the whole namespace.
  const toNode = once(onNode, "s-room");
  onShardio.emit("publish", { to: "node-room", event: "s-room", data: 5 });
  assert.deepEqual(await toNode, [5]);
  const sAll = [onNode, outside].map((s) => once(s, "s-all"));
  onShardio.emit("publish", { event: "s-all", data: 6 });
  for (const got of sAll) assert.deepEqual(await got, [6]);

  // Node moves the shardio socket into a room: shardio subscribes to it, and Node's
  // broadcasts to the room reach the socket.
  io.in(onShardio.id).socketsJoin("by-node");
  const joined = once(onShardio, "after-join");
  await repeatUntil(joined, () => io.to("by-node").emit("after-join", 7), "socketsJoin to reach shardio");
  await subscribed("by-node", 1);

  // Leaving unsubscribes; a disconnect unsubscribes every room of the socket.
  assert.deepEqual(await onShardio.timeout(3000).emitWithAck("leave", "roomA"), { ok: true });
  await subscribed("roomA", 0);
  const id = onShardio.id;
  onShardio.disconnect();
  await subscribed("by-node", 0);
  await subscribed(id, 0);

  outside.disconnect();
  onNode.disconnect();
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit(), admin.quit()]);
}, 40000);
