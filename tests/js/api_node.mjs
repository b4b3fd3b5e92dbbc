// A Node socket.io server with @socket.io/redis-adapter on the Redis of a shardio gateway: an
// emit through shardio's HTTP API reaches the Node server's client, and shardio's presence
// answer lists it (Node servers have no machine or shard to tell).
// Usage: node api_node.mjs <redis-url> <shardio-url> <api-key>. Prints "ok" when both hold.
import { createServer } from "node:http";
import assert from "node:assert/strict";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { client, once, repeatUntil, runMain } from "./clients.mjs";

const [redisUrl, shardioUrl, key] = process.argv.slice(2);

const api = (method, route, body) => fetch(`${shardioUrl}/api/v1/${route}`, {
  method,
  headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  body: body === undefined ? undefined : JSON.stringify(body),
});

await runMain(async () => {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const io = new Server({ adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
  io.on("connection", (socket) => socket.join("node-room"));
  const http = createServer();
  io.attach(http);
  await new Promise((r) => http.listen(0, "127.0.0.1", r));
  const onNode = await client(`http://127.0.0.1:${http.address().port}`);

  // The API's emit crosses Redis to the Node server (repeated until the subscriptions are up).
  const got = once(onNode, "from-api");
  await repeatUntil(got, () => {
    api("POST", "emit", { rooms: ["node-room"], event: "from-api", data: { n: 7 } })
      .then((r) => assert.equal(r.status, 202));
  }, "the API's emit on the Node server", 200);
  assert.deepEqual(await got, [{ n: 7 }]);

  // Presence through Redis: the Node server answers shardio's fetch.
  const res = await api("GET", "rooms/node-room");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.count, 1);
  assert.equal(body.complete, true);
  assert.deepEqual(body.members, [{ id: onNode.id, sub: null, shard: null, machine: null }]);

  onNode.disconnect();
  io.close();
  await Promise.all([pub.quit(), sub.quit()]);
}, 30000);
