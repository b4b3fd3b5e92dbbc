// The official socket.io-client (transports: ["websocket"]) against shardio's conformance app.
// Usage: node websocket_client.mjs <url> [clients]. Exits 0 and prints "ok" when every check holds.
import { io } from "socket.io-client";
import assert from "node:assert/strict";

const url = process.argv[2];
const clients = Number(process.argv[3] ?? 8);
const opts = { transports: ["websocket"], reconnection: false, timeout: 5000 };

const once = (emitter, event) => new Promise((resolve, reject) => {
  emitter.once(event, (...args) => resolve(args));
  emitter.once("connect_error", reject);
});

async function checkOne(i) {
  const socket = io(url, { ...opts, auth: { token: `t${i}`, n: i } });
  const [auth] = await once(socket, "auth");
  assert.deepEqual(auth, { token: `t${i}`, n: i }, "auth payload echoed");
  assert.equal(socket.id.length, 20);

  // Plain event round trip.
  socket.emit("message", "hello", 1, { deep: [true, null] });
  assert.deepEqual(await once(socket, "message-back"), ["hello", 1, { deep: [true, null] }]);

  // Ack with several arguments.
  const acked = await socket.timeout(3000).emitWithAck("message-with-ack", { x: i }, [1, 2]);
  assert.deepEqual(acked, { x: i });

  // Binary both ways, nested.
  const bin = Buffer.from([i, 1, 2, 3]);
  socket.emit("message", bin, { nested: Buffer.from([9, 9]) });
  const [b1, b2] = await once(socket, "message-back");
  assert.deepEqual(Buffer.from(b1), bin);
  assert.deepEqual(Buffer.from(b2.nested), Buffer.from([9, 9]));

  // Binary through an ack.
  const binAck = await socket.timeout(3000).emitWithAck("message-with-ack", Buffer.from([7]));
  assert.deepEqual(Buffer.from(binAck), Buffer.from([7]));

  // A second namespace multiplexed on the same connection.
  // Manager.socket() connects on its own (autoConnect); a second connect() would send a
  // duplicate CONNECT, which the server treats as an invalid state.
  const custom = socket.io.socket("/custom", { auth: { ns: "custom" } });
  const [customAuth] = await once(custom, "auth");
  assert.deepEqual(customAuth, { ns: "custom" });
  assert.equal(socket.io.engine.id, custom.io.engine.id, "both namespaces ride one connection");

  // An unknown namespace is refused with the exact message.
  const bad = socket.io.socket("/random");
  const err = await new Promise((resolve) => bad.once("connect_error", resolve));
  assert.equal(err.message, "Invalid namespace");

  // Leaving a namespace keeps the others working.
  custom.disconnect();
  socket.emit("message", "after-leave");
  assert.deepEqual(await once(socket, "message-back"), ["after-leave"]);
  bad.disconnect();
  socket.disconnect();
}

const timer = setTimeout(() => { console.error("timed out"); process.exit(2); }, 20000);
try {
  await Promise.all(Array.from({ length: clients }, (_, i) => checkOne(i)));
  clearTimeout(timer);
  console.log("ok");
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}
