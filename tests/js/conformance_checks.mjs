// Checks of shardio's conformance app (docs/PROTOCOL.md §6) shared by the real-client scripts.
// Each check takes a connected-or-connecting socket.io-client socket; add new checks here and
// call them from the scripts, so every transport runs them.
import assert from "node:assert/strict";
import { runMain } from "./clients.mjs";

export const once = (emitter, event) => new Promise((resolve, reject) => {
  emitter.once(event, (...args) => resolve(args));
  emitter.once("connect_error", reject);
});

// The app emits "auth" with the CONNECT payload as soon as the socket connects.
export async function checkAuth(socket, auth) {
  const [got] = await once(socket, "auth");
  assert.deepEqual(got, auth, "auth payload echoed");
  assert.equal(socket.id.length, 20);
}

// Events, acks and binary both ways on namespace "/".
export async function checkMessages(socket, i) {
  // Plain event round trip.
  socket.emit("message", "hello", 1, { deep: [true, null] });
  assert.deepEqual(await once(socket, "message-back"), ["hello", 1, { deep: [true, null] }]);

  // Ack with several arguments.
  const acked = await socket.timeout(3000).emitWithAck("message-with-ack", { x: i }, [1, 2]);
  assert.deepEqual(acked, { x: i });

  // Binary both ways, nested.
  const bin = Buffer.from([i % 256, 1, 2, 3]);
  socket.emit("message", bin, { nested: Buffer.from([9, 9]) });
  const [b1, b2] = await once(socket, "message-back");
  assert.deepEqual(Buffer.from(b1), bin);
  assert.deepEqual(Buffer.from(b2.nested), Buffer.from([9, 9]));

  // Binary through an ack.
  const binAck = await socket.timeout(3000).emitWithAck("message-with-ack", Buffer.from([7]));
  assert.deepEqual(Buffer.from(binAck), Buffer.from([7]));
}

// A second namespace multiplexed on the same connection, an unknown one refused, and leaving
// one namespace keeps the others working.
export async function checkNamespaces(socket) {
  // Manager.socket() connects on its own (autoConnect); a second connect() would send a
  // duplicate CONNECT, which the server treats as an invalid state.
  const custom = socket.io.socket("/custom", { auth: { ns: "custom" } });
  const [customAuth] = await once(custom, "auth");
  assert.deepEqual(customAuth, { ns: "custom" });
  assert.equal(socket.io.engine.id, custom.io.engine.id, "both namespaces ride one connection");

  const bad = socket.io.socket("/random");
  const err = await new Promise((resolve) => bad.once("connect_error", resolve));
  assert.equal(err.message, "Invalid namespace");

  custom.disconnect();
  socket.emit("message", "after-leave");
  assert.deepEqual(await once(socket, "message-back"), ["after-leave"]);
  bad.disconnect();
}

// Runs `check(i)` for `clients` clients at once; prints "ok" and exits 0 when all pass.
export function runClients(clients, check, limitMs = 20000) {
  return runMain(() => Promise.all(Array.from({ length: clients }, (_, i) => check(i))), limitMs);
}
