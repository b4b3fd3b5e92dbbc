// npm socket.io-client instances against shardio's gateway app: they join a room, publish,
// and receive, including a binary payload and an acked publish.
// Usage: node gateway_client.mjs <url> [clients] [transports]. Prints "ok" when every check holds.
import assert from "node:assert/strict";
import { client, runMain } from "./clients.mjs";

const url = process.argv[2];
const count = Number(process.argv[3] ?? 12);
const transports = (process.argv[4] ?? "websocket").split(",");
const connect = () => client(url, { transports });

await runMain(async () => {
  const clients = await Promise.all(Array.from({ length: count }, connect));
  // Even clients join "even", everyone joins "all".
  for (const [i, c] of clients.entries()) {
    const rooms = i % 2 === 0 ? ["even", "all"] : ["all"];
    assert.deepEqual(await c.timeout(3000).emitWithAck("join", rooms), { ok: true });
  }
  const received = clients.map(() => []);
  clients.forEach((c, i) => {
    c.on("note", (data) => received[i].push(data));
    c.on("blob", (data) => received[i].push({ blob: Buffer.from(data.bytes).toString("hex"), n: data.n }));
  });

  // Acked publish to "all", from client 0: everyone else receives it once.
  assert.deepEqual(await clients[0].timeout(3000).emitWithAck("publish", { to: "all", event: "note", data: { hello: 1 } }), { ok: true });
  // A binary payload to "even" except the room of client 2's socket id.
  clients[1].emit("publish", { to: ["even"], except: [clients[2].id], event: "blob", data: { bytes: Buffer.from([0xde, 0xad, 0xbe, 0xef]), n: 7 } });
  // Error acks for bad requests.
  const bad = await clients[3].timeout(3000).emitWithAck("publish", { event: "connect" });
  assert.match(bad.error, /reserved/);

  // Then a "done" marker from both publishers to everyone. Each publisher's deliveries keep
  // their order, so once a client has the markers of the publishers other than itself, all
  // it will get from them (duplicates included) has come.
  const markers = clients.map((c, i) => new Promise((resolve) => {
    const waiting = new Set([0, 1].filter((p) => p !== i));
    c.on("done", (p) => { waiting.delete(p); if (waiting.size === 0) resolve(); });
  }));
  for (const p of [0, 1]) {
    const marker = { to: "all", event: "done", data: p };
    assert.deepEqual(await clients[p].timeout(3000).emitWithAck("publish", marker), { ok: true });
  }
  await Promise.all(markers);
  received.forEach((got, i) => {
    const want = [];
    if (i !== 0) want.push({ hello: 1 });
    if (i % 2 === 0 && i !== 2) want.push({ blob: "deadbeef", n: 7 });
    // Order is kept per publisher only; these two come from different publishers.
    const key = (x) => JSON.stringify(x);
    assert.deepEqual(got.map(key).sort(), want.map(key).sort(), `client ${i}`);
  });
  clients.forEach((c) => c.disconnect());
}, 25000);
