// @socket.io/redis-emitter publishing to a shardio gateway's clients through Redis.
// Usage: node emitter.mjs <redis-url> <shardio-url>. Prints "ok" when every check holds.
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, shardioUrl] = process.argv.slice(2);
await runMain(async () => {
  const redis = createClient({ url: redisUrl });
  await redis.connect();
  const emitter = new Emitter(redis);

  const inRoom = await client(shardioUrl);
  const outside = await client(shardioUrl);
  assert.deepEqual(await inRoom.timeout(3000).emitWithAck("join", "room1"), { ok: true });
  let leaked = false;
  outside.on("from-emitter", () => { leaked = true; });

  const got = once(inRoom, "from-emitter");
  emitter.to("room1").emit("from-emitter", "hi", Buffer.from([9]));
  const [text, bin] = await got;
  assert.equal(text, "hi");
  assert.deepEqual(Buffer.from(bin), Buffer.from([9]));

  // The join reaches shardio through Redis: emit to room9 until the socket is in it.
  emitter.in("room1").socketsJoin("room9");
  const joined = once(inRoom, "in-room9");
  const inRoom9 = () => emitter.to("room9").emit("in-room9", 1);
  assert.deepEqual(await repeatUntil(joined, inRoom9, "socketsJoin to reach shardio"), [1]);

  const gone = once(inRoom, "disconnect");
  emitter.in("room9").disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");
  assert.ok(outside.connected, "only the selected sockets are disconnected");
  assert.ok(!leaked, "room broadcasts skip sockets outside the room");

  outside.disconnect();
  await redis.quit();
}, 20000);
