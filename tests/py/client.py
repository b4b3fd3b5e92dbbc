"""The python-socketio client with default transports (polling, then the WebSocket upgrade)
against shardio's conformance app. Usage: client.py <url>. Prints "ok" and exits 0 when every
check holds; add checks as functions and call them from main()."""

import queue
import sys
import time

import socketio

TIMEOUT = 5


def expect(events, name):
    """The arguments of the next `name` event, within TIMEOUT."""
    got, args = events.get(timeout=TIMEOUT)
    assert got == name, f"expected {name!r}, got {got!r} {args!r}"
    return args


def check_upgrade(sio):
    deadline = time.monotonic() + TIMEOUT
    while sio.transport() != "websocket":
        assert time.monotonic() < deadline, f"still on {sio.transport()}"
        time.sleep(0.05)


def check_messages(sio, events):
    sio.emit("message", ("hello", 1, {"deep": [True, None]}))
    assert expect(events, "message-back") == ("hello", 1, {"deep": [True, None]})
    sio.emit("message", (b"\x01\x02\x03", {"nested": b"\x09"}))
    assert expect(events, "message-back") == (b"\x01\x02\x03", {"nested": b"\x09"})
    assert sio.call("message-with-ack", {"x": 1}, timeout=TIMEOUT) == {"x": 1}
    assert sio.call("message-with-ack", b"\x07", timeout=TIMEOUT) == b"\x07"


def main():
    url = sys.argv[1]
    events = queue.Queue()
    sio = socketio.Client(reconnection=False)

    @sio.on("*")
    def any_event(event, *args):
        events.put((event, args))

    sio.connect(url, auth={"token": "py"}, wait_timeout=TIMEOUT)
    assert expect(events, "auth") == ({"token": "py"},)
    check_upgrade(sio)
    check_messages(sio, events)
    sio.disconnect()
    print("ok")


if __name__ == "__main__":
    main()
