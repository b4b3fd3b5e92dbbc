#!/usr/bin/env node
// Node socket.io peer for shardio-bench: the gateway protocol on namespace "/".
//
//   join / leave  <room | [rooms]>, optional ack -> {"ok":true} or {"error":"..."}
//   publish       {to: room | [rooms] (absent = whole namespace), event, data, except: [rooms]},
//                 optional ack -> every socket in those rooms except the sender gets `event`
//                 with `data` as its single argument; ack {"ok":true}
//
// Usage:
//   node server.js --mode single  [--redis redis://127.0.0.1:6379] [--port 3000]
//   node server.js --mode cluster --workers N --redis redis://127.0.0.1:6379 [--port 3000]
//   --adapter classic|streams   with --redis: @socket.io/redis-adapter (Pub/Sub, the default)
//                               or @socket.io/redis-streams-adapter (one Redis stream; with
//                               --recovery it also keeps the sessions in Redis, so a client can
//                               recover on another server of the same Redis)
//
// Connection state recovery (the jitter benchmark): --recovery MS turns on
// connectionStateRecovery with maxDisconnectionDuration MS; --ping-interval MS and
// --ping-timeout MS set the Engine.IO heartbeat (defaults 25000 and 20000).
//
// Fault injection, to check that shardio-bench counts what goes wrong (never in comparisons):
//   --drop-every N   every Nth publish (per process) is acknowledged but not delivered
//   --dup-every N    every Nth publish (per process) is delivered twice
//
// Cluster mode is the classic deployment: the cluster module forks one worker per core, every
// worker listens on the same port, and rooms span workers through @socket.io/redis-adapter.
// Only the WebSocket transport is enabled, so no sticky sessions are needed. Single mode with
// --redis uses the same adapter: several single servers on one Redis share their rooms (the
// `cross` scenario of benches/compare.sh).
// It listens on 127.0.0.1 only, logs nothing but errors and one "ready" line on stdout.
"use strict";

const cluster = require("node:cluster");
const http = require("node:http");
const os = require("node:os");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = {
    mode: "single",
    port: 3000,
    workers: os.availableParallelism(),
    redis: null,
    adapter: "classic",
    dropEvery: 0,
    dupEvery: 0,
    recovery: 0,
    pingInterval: 25000,
    pingTimeout: 20000,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case "--mode": opts.mode = next(); break;
      case "--port": opts.port = Number(next()); break;
      case "--workers": opts.workers = Number(next()); break;
      case "--redis": opts.redis = next(); break;
      case "--adapter": opts.adapter = next(); break;
      case "--drop-every": opts.dropEvery = Number(next()); break;
      case "--dup-every": opts.dupEvery = Number(next()); break;
      case "--recovery": opts.recovery = Number(next()); break;
      case "--ping-interval": opts.pingInterval = Number(next()); break;
      case "--ping-timeout": opts.pingTimeout = Number(next()); break;
      case "-h": case "--help": usage(null); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!["single", "cluster"].includes(opts.mode)) usage(`--mode must be single or cluster`);
  if (!["classic", "streams"].includes(opts.adapter)) usage(`--adapter must be classic or streams`);
  if (opts.adapter === "streams" && !opts.redis) usage("--adapter streams needs --redis redis://HOST:PORT");
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage("bad --port");
  if (!Number.isInteger(opts.workers) || opts.workers < 1) usage("bad --workers");
  for (const k of ["dropEvery", "dupEvery", "recovery", "pingInterval", "pingTimeout"]) {
    if (!Number.isInteger(opts[k]) || opts[k] < 0) usage(`bad ${k}`);
  }
  if (opts.mode === "cluster" && !opts.redis) usage("--mode cluster needs --redis redis://HOST:PORT");
  return opts;
}

function usage(err) {
  if (err) console.error(`server.js: ${err}`);
  console.error(
    "usage: node server.js --mode single|cluster [--port 3000] [--workers N] [--redis redis://127.0.0.1:6379]" +
      " [--adapter classic|streams] [--drop-every N] [--dup-every N] [--recovery MS] [--ping-interval MS] [--ping-timeout MS]",
  );
  process.exit(err ? 2 : 0);
}

// A room argument: a name or an array of names (numbers are names too, as in socket.io).
function roomsOf(v) {
  const ok = (r) => typeof r === "string" || typeof r === "number";
  if (Array.isArray(v)) {
    if (!v.every(ok)) throw new Error("room must be a string or a number");
    return v;
  }
  if (!ok(v)) throw new Error("room must be a string or a number");
  return [v];
}

function reply(ack, fn) {
  let res;
  try {
    fn();
    res = { ok: true };
  } catch (e) {
    res = { error: e.message };
  }
  if (typeof ack === "function") ack(res);
}

function attachGateway(io, opts) {
  let published = 0;
  io.on("connection", (socket) => {
    socket.on("join", (rooms, ack) => reply(ack, () => socket.join(roomsOf(rooms))));
    socket.on("leave", (rooms, ack) =>
      reply(ack, () => roomsOf(rooms).forEach((r) => socket.leave(r))),
    );
    socket.on("publish", (msg, ack) =>
      reply(ack, () => {
        if (msg === null || typeof msg !== "object") throw new Error("publish expects an object");
        if (typeof msg.event !== "string") throw new Error("publish needs an event name");
        let op = socket.broadcast;
        if (msg.to !== undefined && msg.to !== null) op = op.to(roomsOf(msg.to));
        if (msg.except !== undefined && msg.except !== null) op = op.except(roomsOf(msg.except));
        published++;
        if (opts.dropEvery && published % opts.dropEvery === 0) return;
        op.emit(msg.event, msg.data);
        if (opts.dupEvery && published % opts.dupEvery === 0) op.emit(msg.event, msg.data);
      }),
    );
  });
}

async function startServer(opts) {
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    pingInterval: opts.pingInterval,
    pingTimeout: opts.pingTimeout,
    ...(opts.recovery
      ? { connectionStateRecovery: { maxDisconnectionDuration: opts.recovery, skipMiddlewares: true } }
      : {}),
  });
  if (opts.redis) {
    const { createClient } = require("redis");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: opts.redis });
    let lastErr = 0;
    const onError = (e) => {
      // node-redis reconnects by itself; say so at most once a second.
      const now = Date.now();
      if (now - lastErr > 1000) console.error(`worker ${process.pid}: redis: ${e.message}`);
      lastErr = now;
    };
    pub.on("error", onError);
    if (opts.adapter === "streams") {
      // One client: the adapter XADDs on it and runs its blocking XREAD on a duplicate of it.
      const { createAdapter: createStreamsAdapter } = require("@socket.io/redis-streams-adapter");
      await pub.connect();
      io.adapter(createStreamsAdapter(pub));
    } else {
      const sub = pub.duplicate();
      sub.on("error", onError);
      await Promise.all([pub.connect(), sub.connect()]);
      io.adapter(createAdapter(pub, sub));
    }
  }
  attachGateway(io, opts);
  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(opts.port, "127.0.0.1", resolve);
  });
  return httpServer;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.mode === "single") {
    startServer(opts).then(
      (s) => console.log(`ready mode=single port=${s.address().port} pid=${process.pid}`),
      (e) => {
        console.error(`server.js: ${e.message}`);
        process.exit(1);
      },
    );
    return;
  }
  if (cluster.isPrimary) {
    let listening = 0;
    let stopping = false;
    const workers = new Set();
    for (let i = 0; i < opts.workers; i++) workers.add(cluster.fork().process.pid);
    cluster.on("listening", () => {
      if (++listening === opts.workers) {
        console.log(`ready mode=cluster port=${opts.port} workers=${[...workers].join(",")} pid=${process.pid}`);
      }
    });
    cluster.on("exit", (w, code, signal) => {
      if (stopping) return;
      // A dead worker spoils the measurement: stop everything instead of forking a new one.
      console.error(`server.js: worker ${w.process.pid} exited (${signal || code}); stopping`);
      stopping = true;
      for (const id in cluster.workers) cluster.workers[id].kill();
      process.exitCode = 1;
    });
    const stop = () => {
      stopping = true;
      for (const id in cluster.workers) cluster.workers[id].kill();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    return;
  }
  startServer(opts).catch((e) => {
    console.error(`worker ${process.pid}: ${e.message}`);
    process.exit(1);
  });
}

main();
