// What the scripts share: connecting a socket.io-client, waiting for one event, and the exit
// protocol the Rust tests read (stdout "ok" and status 0; 1 on a failed check; 2 on timeout).
import { io as connect } from "socket.io-client";

const opts = { transports: ["websocket"], reconnection: false, forceNew: true, timeout: 5000 };

/**
 * A connected client of `url` (WebSocket only unless `extra` says otherwise, no reconnection).
 * An https:// URL is a server with the tests' self-signed certificate: not verified.
 */
export const client = (url, extra = {}) => new Promise((resolve, reject) => {
  const tls = url.startsWith("https:") ? { rejectUnauthorized: false } : {};
  const s = connect(url, { ...opts, ...tls, ...extra });
  s.once("connect", () => resolve(s));
  s.once("connect_error", reject);
});

/** The arguments of the next `event` on `socket`. */
export const once = (socket, event) =>
  new Promise((resolve) => socket.once(event, (...args) => resolve(args)));

/**
 * Does `action` every `everyMs` until the promise `arrived` settles, and returns what it
 * resolves to; throws after `limitMs`. For a change that travels apart from what the script can
 * wait on (a room join sent through Redis): repeat what shows it until it shows.
 */
export async function repeatUntil(arrived, action, what, everyMs = 50, limitMs = 5000) {
  const deadline = Date.now() + limitMs;
  let settled = false;
  const result = arrived.finally(() => { settled = true; });
  while (!settled) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    action();
    await Promise.race([result, new Promise((r) => setTimeout(r, everyMs))]);
  }
  return result;
}

/** Runs `main`: prints "ok" and exits 0 when it resolves, 1 when it throws, 2 after `limitMs`. */
export async function runMain(main, limitMs) {
  const timer = setTimeout(() => { console.error("timed out"); process.exit(2); }, limitMs);
  try {
    await main();
    clearTimeout(timer);
    console.log("ok");
    process.exit(0);
  } catch (e) {
    console.error(e);
    process.exit(1);
  }
}
