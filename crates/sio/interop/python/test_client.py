"""Stock python-socketio client against the sio interop server (examples/interop.rs).

SIO_URL points at the server, e.g. http://127.0.0.1:40000. Run: python -m unittest -v test_client
"""

import os
import threading
import unittest

import socketio

URL = os.environ.get("SIO_URL", "http://127.0.0.1:3000")


class Client(unittest.TestCase):
    def connect(self, transports, namespaces=("/",), token="t-py"):
        client = socketio.Client(reconnection=False)
        self.addCleanup(client.disconnect)
        got = {}
        event = threading.Event()

        @client.on("question")
        def question(q):
            return f"pong for {q}"

        @client.on("answer")
        def answer(*args):
            got["answer"] = list(args)
            event.set()

        client.connect(
            URL, auth={"token": token}, transports=list(transports), namespaces=list(namespaces), wait_timeout=5
        )
        return client, got, event

    def check_roundtrips(self, transports):
        client, got, event = self.connect(transports)
        self.assertEqual(client.transport(), transports[-1] if transports == ["websocket"] else client.transport())
        self.assertEqual(client.call("echo", {"a": [1, 2]}, timeout=5), {"a": [1, 2]})
        self.assertEqual(client.call("echo", ("x", 2), timeout=5), ("x", 2))
        # binary attachments both ways
        self.assertEqual(client.call("echo", {"blob": b"\x00\x01\xff"}, timeout=5), {"blob": b"\x00\x01\xff"})
        # server -> client ack
        client.emit("ask")
        self.assertTrue(event.wait(5), "answer in time")
        self.assertEqual(got["answer"], ["pong for ping?"])

    def test_websocket(self):
        self.check_roundtrips(["websocket"])

    def test_polling_then_upgrade(self):
        self.check_roundtrips(["polling", "websocket"])

    def test_polling_only(self):
        client, _, _ = self.connect(["polling"])
        self.assertEqual(client.transport(), "polling")
        self.assertEqual(client.call("echo", "over polling", timeout=5), "over polling")

    def test_namespaces(self):
        client, _, _ = self.connect(["websocket"], namespaces=("/", "/custom"))
        self.assertEqual(client.call("echo", "main", timeout=5), "main")
        self.assertEqual(client.call("echo", "custom", namespace="/custom", timeout=5), "custom")

    def test_refused_auth(self):
        client = socketio.Client(reconnection=False)
        errors = []
        client.on("connect_error", lambda data=None: errors.append(data))
        with self.assertRaises(socketio.exceptions.ConnectionError):
            client.connect(URL, auth={"token": "bad"}, transports=["websocket"], wait_timeout=5)
        self.assertIn("unauthorized", str(errors))


if __name__ == "__main__":
    unittest.main()
