// What the scripts share: connecting a socket.io-client and waiting for one event.
import { io as connect } from "socket.io-client";

const opts = { transports: ["websocket"], reconnection: false, forceNew: true, timeout: 5000 };

/** A connected client of `url` (WebSocket only, no reconnection). */
export const client = (url) => new Promise((resolve, reject) => {
  const s = connect(url, opts);
  s.once("connect", () => resolve(s));
  s.once("connect_error", reject);
});

/** The arguments of the next `event` on `socket`. */
export const once = (socket, event) =>
  new Promise((resolve) => socket.once(event, (...args) => resolve(args)));
