// npm socket.io-client instances behind a load balancer, reconnecting by themselves as browsers
// do, for the SIGTERM drain test (tests/it/redis.rs).
// Usage: node drain_client.mjs <url> <clients>. Every client joins room "r" on each (re)connect.
// Prints one line per event the test waits on:
//   "ready"      every client is connected and in "r" (again after each reconnection);
//   "got <tag>"  every client has received the event "tick" with data <tag>;
//   "twice <tag> <client>"  a client received a tick twice (the test fails on it).
// Disconnects every client and exits 0 when its standard input closes.
import { io as connect } from "socket.io-client";

const url = process.argv[2];
const count = Number(process.argv[3]);
const state = Array.from({ length: count }, () => ({ joined: false, ticks: new Set() }));
let wasReady = false;
const report = () => {
  const ready = state.every((s) => s.joined);
  if (ready && !wasReady) console.log("ready");
  wasReady = ready;
};

const sockets = state.map((s, i) => {
  // Quicker retries than the defaults (1 s, then up to 5 s), so the test is short.
  const socket = connect(url, {
    transports: ["websocket"],
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 1000,
  });
  socket.on("connect", async () => {
    try {
      const ack = await socket.timeout(3000).emitWithAck("join", "r");
      if (ack?.ok) {
        s.joined = true;
        report();
      }
    } catch {
      // The connection broke before the answer: the next connect joins again.
    }
  });
  socket.on("disconnect", () => {
    s.joined = false;
    report();
  });
  socket.on("tick", (tag) => {
    if (s.ticks.has(tag)) {
      console.log(`twice ${tag} ${i}`);
      return;
    }
    s.ticks.add(tag);
    if (state.every((x) => x.ticks.has(tag))) console.log(`got ${tag}`);
  });
  return socket;
});

process.stdin.on("end", () => {
  sockets.forEach((s) => s.disconnect());
  process.exit(0);
});
process.stdin.resume();
