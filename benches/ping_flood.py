#!/usr/bin/env python3
"""A WebSocket ping flood against a running shardio, sampling the server's RSS.

One client opens a WebSocket to the gateway (`target/release/shardio`), shrinks its receive
buffer, and sends 125-byte pings for SECONDS without ever reading; a second client beside it
joins the Socket.IO namespace and, every 100 ms, emits `join` with an ack and times the answer.
Prints the server's RSS (VmRSS of PID) every half second, when the server dropped the flooder's
connection, the neighbour's round trips, and the RSS two seconds after the flooder left.
Standard library only.

    python3 benches/ping_flood.py 127.0.0.1:3000 PID 10
"""

import socket
import struct
import sys
import time

MASK = b"\x37\xfa\x21\x3d"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def frame(opcode, payload):
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + masked


def connect(host, port, path, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, port))
    s.sendall(
        f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:40]
    return s, head.split(b"\r\n\r\n", 1)[1]


def read_frame(s, buf):
    while True:
        if len(buf) >= 2:
            n = buf[1] & 0x7F
            at = 2
            if n == 126:
                n, at = struct.unpack(">H", buf[2:4])[0], 4
            elif n == 127:
                n, at = struct.unpack(">Q", buf[2:10])[0], 10
            if len(buf) >= at + n:
                return buf[0] & 0x0F, buf[at : at + n], buf[at + n :]
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pid, seconds = int(sys.argv[2]), float(sys.argv[3])
    path = "/socket.io/"
    neighbour, nbuf = connect(host, int(port), path)
    _, _, nbuf = read_frame(neighbour, nbuf)  # open packet
    neighbour.sendall(frame(0x1, b"40"))
    _, _, nbuf = read_frame(neighbour, nbuf)  # CONNECT answer
    flooder, _ = connect(host, int(port), path, rcvbuf=4096)
    flooder.settimeout(0.05)
    batch = frame(0x9, b"p" * 125) * 100
    start = time.monotonic()
    print(f"  t s   server RSS MB   (before: {rss_mb(pid):.1f} MB)")
    next_sample = next_echo = 0.0
    cut_at = None
    trips = []
    sent = 0
    while (now := time.monotonic() - start) < seconds:
        if cut_at is None:
            try:
                sent += flooder.send(batch)
            except socket.timeout:
                pass
            except OSError:
                cut_at = now
        else:
            time.sleep(0.01)
        if now >= next_echo:
            t0 = time.monotonic()
            ack = f"43{len(trips)}".encode()
            neighbour.sendall(frame(0x1, f'42{len(trips)}["join","r"]'.encode()))
            while True:
                op, payload, nbuf = read_frame(neighbour, nbuf)
                if op == 0x1 and payload == b"2":
                    neighbour.sendall(frame(0x1, b"3"))  # Engine.IO heartbeat
                if op == 0x1 and payload.startswith(ack):
                    break
            trips.append((time.monotonic() - t0) * 1000)
            next_echo = now + 0.1
        if now >= next_sample:
            print(f"{now:5.1f}   {rss_mb(pid):10.1f}")
            next_sample = now + 0.5
        if rss_mb(pid) > 4096:
            print("RSS over 4 GB: stopping")
            break
    flooder.close()
    time.sleep(2)
    trips.sort()
    print(f"pings sent: {sent / 1e6:.1f} MB; flooder's connection dropped by the server: "
          + (f"after {cut_at:.2f} s" if cut_at is not None else "never"))
    print(f"neighbour round trips: {len(trips)}, median {trips[len(trips) // 2]:.2f} ms, "
          f"max {trips[-1]:.2f} ms")
    print(f"RSS 2 s after the flooder left: {rss_mb(pid):.1f} MB")


if __name__ == "__main__":
    main()
