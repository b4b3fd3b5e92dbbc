// The official socket.io-client (transports: ["websocket"]) against shardio's conformance app.
// Usage: node websocket_client.mjs <url> [clients]. Exits 0 and prints "ok" when every check holds.
import { io } from "socket.io-client";
import { checkAuth, checkMessages, checkNamespaces, runClients } from "./conformance_checks.mjs";

const url = process.argv[2];
const clients = Number(process.argv[3] ?? 8);
const opts = { transports: ["websocket"], reconnection: false, timeout: 5000 };

await runClients(clients, async (i) => {
  const auth = { token: `t${i}`, n: i };
  const socket = io(url, { ...opts, auth });
  await checkAuth(socket, auth);
  await checkMessages(socket, i);
  await checkNamespaces(socket);
  socket.disconnect();
});
