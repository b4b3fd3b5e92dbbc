"""JWT cases of shardio's gateway through python-socketio. Usage: auth_client.py <url> <token>
<expect>: connects with auth={"token": token}; expect is "ok" (then the connection must work:
a join ack comes back) or the connect error message it must get. Prints "ok" when it holds."""

import sys

import socketio

TIMEOUT = 5


def main():
    url, token, expect = sys.argv[1:4]
    sio = socketio.Client(reconnection=False)
    errors = []

    @sio.event
    def connect_error(data):
        errors.append(data)

    try:
        sio.connect(url, auth={"token": token}, wait_timeout=TIMEOUT)
    except socketio.exceptions.ConnectionError as e:
        assert expect != "ok", f"refused: {e} {errors!r}"
        assert errors, f"no connect_error event came with the refusal ({e})"
        message = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
        assert message == expect, f"expected {expect!r}, got {errors[0]!r}"
        print("ok")
        return
    assert expect == "ok", f"connected, but expected the refusal {expect!r}"
    answer = sio.call("join", "chat:py", timeout=TIMEOUT)
    assert answer == {"ok": True}, answer
    sio.disconnect()
    print("ok")


if __name__ == "__main__":
    main()
