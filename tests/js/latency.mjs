// Cross-machine delivery latency through the Redis bridge: a client on server A publishes to a
// room, a client on server B receives; both clients live in this process, so one clock times
// both ends. Usage: node latency.mjs <urlA> <urlB> [messages=2000] [gap-ms=2]
// Prints the median, p90, p99 and max in microseconds. Not a test: it asserts nothing.
import { client } from "./clients.mjs";

const [urlA, urlB] = process.argv.slice(2, 4);
const count = Number(process.argv[4] ?? 2000);
const gap = Number(process.argv[5] ?? 2);

const [a, b] = await Promise.all([client(urlA), client(urlB)]);
await b.timeout(3000).emitWithAck("join", "lat");
const sent = new Map();
const took = [];
const done = new Promise((resolve) => {
  b.on("lat", (n) => {
    const t0 = sent.get(n);
    if (t0 !== undefined) took.push(Number(process.hrtime.bigint() - t0) / 1000);
    if (took.length === count) resolve();
  });
});
for (let n = 0; n < count; n++) {
  sent.set(n, process.hrtime.bigint());
  a.emit("publish", { to: "lat", event: "lat", data: n });
  await new Promise((r) => setTimeout(r, gap)); // fixed on purpose: the rate being measured at
}
await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
took.sort((x, y) => x - y);
const at = (q) => took[Math.min(took.length - 1, Math.floor(q * took.length))].toFixed(0);
console.log(`received ${took.length}/${count}; latency us: median ${at(0.5)} p90 ${at(0.9)} p99 ${at(0.99)} max ${at(1)}`);
a.disconnect();
b.disconnect();
process.exit(0);
