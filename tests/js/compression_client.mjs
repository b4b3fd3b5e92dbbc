// The official socket.io-client sending and receiving large messages through shardio's
// conformance app, over WebSocket from the start and after an upgrade from polling. In Node,
// engine.io-client's WebSocket transport is the `ws` package, which offers permessage-deflate
// (`perMessageDeflate: { threshold: 1024 }` by default) and compresses what it sends from
// 1 KiB. Usage: node compression_client.mjs <url>. Prints one JSON line: for each transport
// list, the extensions the server agreed to and the parameters of its answer (`ws`'s view),
// and whether every payload came back intact; exits 1 on an error, 2 on timeout.
import assert from "node:assert/strict";
import { client, once } from "./clients.mjs";

const url = process.argv[2];

// Compressible text and binary well over the threshold (and a small event below it).
const text = JSON.stringify(
  Array.from({ length: 3000 }, (_, i) => ({ id: i, name: `item ${i % 7}`, tags: ["a", "b"] })),
);
const binary = Buffer.alloc(200_000, 0);
for (let i = 0; i < binary.length; i++) binary[i] = i % 13;

async function roundTrips(transports) {
  const socket = await client(url, { transports: transports.split(",") });
  if (socket.io.engine.transport.name !== "websocket") {
    await new Promise((resolve) => socket.io.engine.once("upgrade", resolve));
  }
  socket.emit("message", text, { small: 1 });
  const [t, small] = await once(socket, "message-back");
  socket.emit("message", binary);
  const [b] = await once(socket, "message-back");
  const acked = await socket.timeout(5000).emitWithAck("message-with-ack", text);
  const intact = t === text && small.small === 1 && Buffer.from(b).equals(binary) && acked === text;
  const engine = socket.io.engine;
  assert.equal(engine.transport.name, "websocket");
  // `ws` lists the names of the agreed extensions, and keeps the parameters of the answer.
  const ws = engine.transport.ws;
  const params = ws._extensions["permessage-deflate"]?.params ?? null;
  socket.disconnect();
  return { extensions: ws.extensions, params, intact };
}

const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 20_000);
try {
  const seen = {};
  for (const transports of ["websocket", "polling,websocket"]) {
    seen[transports] = await roundTrips(transports);
  }
  clearTimeout(timer);
  console.log(JSON.stringify(seen));
  process.exit(0);
} catch (e) {
  console.error(e);
  process.exit(1);
}
