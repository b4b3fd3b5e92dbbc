// The JWT cases of shardio's gateway through the official socket.io-client.
// Usage: node auth_client.mjs <url> <cases.json>. Each case {name, token (or null), transports?}
// connects with `auth: {token}`; the script prints one JSON line per case:
// {name, connected, message, reason}, then "ok".
import { readFileSync } from "node:fs";
import { io as connect } from "socket.io-client";
import { runMain } from "./clients.mjs";

const [url, casesFile] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesFile, "utf8"));

const attempt = (c) => new Promise((resolve) => {
  const auth = c.token === null ? {} : { token: c.token };
  const s = connect(url, {
    transports: c.transports ?? ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5000,
    auth,
  });
  s.once("connect", () => { s.disconnect(); resolve({ name: c.name, connected: true }); });
  s.once("connect_error", (err) => {
    s.disconnect();
    resolve({ name: c.name, connected: false, message: err.message, reason: err.data?.reason ?? null });
  });
});

runMain(async () => {
  for (const c of cases) {
    console.log(JSON.stringify(await attempt(c)));
  }
}, 30000);
