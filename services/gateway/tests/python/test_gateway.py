"""A stock python-socketio client against the real gateways (run by js/python.test.mjs).

GW_E2E is JSON: {"gateways": [url0, url1], "roomId": ..., "alice": {"id", "token"}, "bob": {"id", "token"}};
Alice and Bob are members of the room. Run: python -m unittest -v test_gateway
"""

import json
import os
import queue
import unittest

import socketio

CFG = json.loads(os.environ["GW_E2E"])
ROOM = CFG["roomId"]


class Gateway(unittest.TestCase):
    def client(self, who, url, transports):
        c = socketio.Client(reconnection=False)
        self.addCleanup(c.disconnect)
        events = queue.Queue()
        def recorder(name):
            # Durable events carry their recovery offset as a second argument.
            return lambda data, *offset: events.put((name, data))

        for name in ("welcome", "receive_message", "typing", "error"):
            c.on(name, recorder(name))
        c.connect(url, auth={"token": CFG[who]["token"]}, transports=transports, wait_timeout=5)
        return c, events

    def next(self, events, name, timeout=5):
        while True:
            got, data = events.get(timeout=timeout)
            if got == name:
                return data

    def test_messages_typing_and_errors_across_gateways(self):
        alice, a_events = self.client("alice", CFG["gateways"][0], ["websocket"])
        bob, b_events = self.client("bob", CFG["gateways"][1], ["polling", "websocket"])
        self.assertEqual(self.next(a_events, "welcome")["userId"], CFG["alice"]["id"])
        self.assertEqual(self.next(b_events, "welcome")["userId"], CFG["bob"]["id"])
        for c in (alice, bob):
            ack = c.call("join_room", {"roomId": ROOM}, timeout=5)
            self.assertTrue(ack["ok"], ack)

        ack = alice.call("send_message", {"roomId": ROOM, "content": "hello from python", "clientMsgId": "py-1"}, timeout=5)
        self.assertTrue(ack["ok"], ack)
        self.assertFalse(ack["duplicate"])
        got = self.next(b_events, "receive_message")
        self.assertEqual(got, ack["message"])
        self.assertEqual(got["senderId"], CFG["alice"]["id"])
        self.assertEqual(got["clientMsgId"], "py-1")

        self.assertEqual(bob.call("typing", {"roomId": ROOM, "isTyping": True}, timeout=5), {"ok": True})
        typing = self.next(a_events, "typing")
        self.assertEqual(typing, {"roomId": ROOM, "userId": CFG["bob"]["id"], "isTyping": True})

        bad = alice.call("send_message", {"roomId": ROOM, "content": "   "}, timeout=5)
        self.assertEqual(bad["ok"], False)
        self.assertEqual(bad["error"]["code"], "VALIDATION")
        alice.emit("send_message", {"roomId": "nope", "content": "x"})
        err = self.next(a_events, "error")
        self.assertEqual((err["code"], err["event"]), ("VALIDATION", "send_message"))
        again = alice.call("send_message", {"roomId": ROOM, "content": "still here"}, timeout=5)
        self.assertEqual(again["message"]["seq"], 2)

    def test_bad_token_is_refused(self):
        c = socketio.Client(reconnection=False)
        refused = queue.Queue()
        c.on("connect_error", lambda data: refused.put(data))
        with self.assertRaises(socketio.exceptions.ConnectionError):
            c.connect(CFG["gateways"][0], auth={"token": "garbage"}, transports=["websocket"], wait_timeout=5)
        data = refused.get(timeout=5)
        self.assertEqual(data["data"]["code"], "UNAUTHORIZED", data)
        self.assertIsInstance(data["message"], str)


if __name__ == "__main__":
    unittest.main()
