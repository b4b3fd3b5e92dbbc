// The official socket.io-client over HTTP long-polling against shardio's conformance app.
// Usage: node transports_client.mjs <url> <clients> <default|polling>
//   default: the client's default options: it starts on polling and must upgrade to WebSocket;
//            the checks run across the upgrade and again once it is done.
//   polling: transports: ["polling"]; the checks run on polling only.
// Exits 0 and prints "ok" when every check holds.
import { io } from "socket.io-client";
import assert from "node:assert/strict";
import { checkAuth, checkMessages, checkNamespaces, runClients } from "./conformance_checks.mjs";

const url = process.argv[2];
const clients = Number(process.argv[3] ?? 8);
const mode = process.argv[4] ?? "default";
const base = { reconnection: false, timeout: 5000 };
const opts = mode === "polling" ? { ...base, transports: ["polling"] } : base;

await runClients(clients, async (i) => {
  const auth = { token: `t${i}`, mode };
  const socket = io(url, { ...opts, auth });
  // The engine exists as soon as io() returns (autoConnect), before any upgrade can happen.
  const engine = socket.io.engine;
  assert.equal(engine.transport.name, "polling", "every client starts on polling");
  const upgraded = new Promise((resolve) => engine.once("upgrade", resolve));
  await checkAuth(socket, auth);
  await checkMessages(socket, i);
  if (mode === "polling") {
    assert.equal(engine.transport.name, "polling");
  } else {
    await upgraded;
    assert.equal(socket.io.engine.transport.name, "websocket", "upgraded to WebSocket");
    await checkMessages(socket, i);
  }
  await checkNamespaces(socket);
  socket.disconnect();
}, 30000);
