"""ZeroMQ out: one message per frame on a PUB socket, and the subscriber `irstream listen` uses.

Each message is two frames: the topic (bytes) and the JSON payload (irstream.message).  The
socket is an XPUB, which sends like a PUB but also hears subscriptions, so a run can wait for a
first subscriber before its first frame (`wait_subscriber_s`) and a consumer started alongside
misses nothing.  Sends never block: past the high-water mark ZeroMQ drops messages for a slow
subscriber, and the pipeline goes on.
"""

from __future__ import annotations

import zmq

from irstream.errors import UserError
from irstream.message import build_message, encode
from irstream.types import FrameResult

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_TOPIC = "irstream"
#: Milliseconds a closing socket keeps trying to deliver queued messages; bounded so that an
#: absent subscriber cannot hold the exit.
LINGER_MS = 1000


class ZmqPublisher:
    """Sink that publishes each frame's message.

    hwm_msgs: messages queued per subscriber before ZeroMQ drops for it; higher rides out
        longer subscriber stalls at the cost of memory and staleness.
    wait_subscriber_s: before the first frame, wait up to this long for a subscriber; 0 = no wait.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topic: str = DEFAULT_TOPIC, hwm_msgs: int = 1000,
                 wait_subscriber_s: float = 0.0, include_tentative: bool = False) -> None:
        self.endpoint, self.topic = endpoint, topic.encode()
        self.hwm_msgs, self.wait_subscriber_s = hwm_msgs, wait_subscriber_s
        self.include_tentative = include_tentative
        # Messages handed to ZeroMQ.  What it drops for a slow subscriber past the high-water
        # mark is not reported back to a PUB socket, so no drop count can be kept here.
        self.sent = 0
        self._ctx = self._sock = None

    def open(self) -> None:
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, self.hwm_msgs)
        self._sock.setsockopt(zmq.LINGER, LINGER_MS)
        try:
            self._sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise UserError(f"--publish {self.endpoint}: cannot bind ({exc}); pick a free port, "
                            "e.g. tcp://127.0.0.1:5557") from None
        if self.wait_subscriber_s > 0 and not self._sock.poll(int(self.wait_subscriber_s * 1000), zmq.POLLIN):
            return  # nobody came; publish anyway, to nobody
        self._drain_subscriptions()

    def write(self, res: FrameResult) -> None:
        self._drain_subscriptions()
        payload = encode(build_message(res, self.include_tentative))
        # NOBLOCK as a guard: an XPUB drops past the high-water mark rather than block.
        self._sock.send_multipart([self.topic, payload], flags=zmq.NOBLOCK)
        self.sent += 1

    def _drain_subscriptions(self) -> None:
        while self._sock.poll(0, zmq.POLLIN):
            self._sock.recv()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._ctx is not None:
            self._ctx.term()
        self._sock = self._ctx = None


def subscribe(endpoint: str, topic: str = DEFAULT_TOPIC, timeout_s: float | None = None):
    """Yield (topic, payload bytes) from a publisher; stop after `timeout_s` of silence."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        ctx.term()
        raise UserError(f"{endpoint}: not a ZeroMQ endpoint ({exc}); e.g. tcp://127.0.0.1:5556") from None
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    try:
        while True:
            if not sock.poll(int(timeout_s * 1000) if timeout_s else None):
                return
            parts = sock.recv_multipart()
            yield parts[0], parts[-1]
    finally:
        sock.close()
        ctx.term()

