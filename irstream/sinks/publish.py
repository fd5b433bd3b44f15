"""ZeroMQ out: one message per frame on a PUB socket, and the subscriber `irstream listen` uses.

Each message is two frames: the topic (bytes) and the JSON payload (irstream.sinks.message).  The
socket is an XPUB, which sends like a PUB but also hears subscriptions, so a run can wait for a
first subscriber before its first frame (`wait_subscriber_s`) and a consumer started alongside
misses nothing.  Sends never block: past the high-water mark ZeroMQ drops messages for a slow
subscriber, and the pipeline goes on.

Security: the default endpoint is loopback, reachable from this machine only.  With a key folder
(`irstream keys DIR`, then `curve_dir`) the socket speaks CurveZMQ: traffic is encrypted, and
only subscribers whose public key is in DIR/authorized_clients/ get through the handshake.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.utils.monitor

from irstream.errors import UserError
from irstream.sinks.message import build_message, encode
from irstream.types import FrameResult

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
DEFAULT_TOPIC = "irstream"
#: Milliseconds a closing socket keeps trying to deliver queued messages; bounded so that an
#: absent subscriber cannot hold the exit.
LINGER_MS = 1000
#: Hosts that keep a socket on this machine.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
AUTHORIZED_DIR = "authorized_clients"

log = logging.getLogger(__name__)


def create_keys(folder: str | Path) -> dict[str, Path]:
    """A server and a client key pair in `folder` (ZeroMQ's text certificate format), and the
    client's public key authorised.  The publisher needs server.key_secret and
    authorized_clients/; a subscriber needs client.key_secret and server.key."""
    import zmq.auth

    folder = Path(folder)
    _need_curve()
    for name in ("server", "client"):
        if (folder / f"{name}.key_secret").exists():
            raise UserError(f"{folder / f'{name}.key_secret'}: already exists; keys are never overwritten, "
                            "pick another folder")
    paths = {}
    try:
        (folder / AUTHORIZED_DIR).mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        for name in ("server", "client"):
            paths[f"{name}_public"], paths[f"{name}_secret"] = map(Path, zmq.auth.create_certificates(folder, name))
            paths[f"{name}_secret"].chmod(0o600)  # pyzmq writes them readable by all
        paths["authorized"] = Path(shutil.copy(paths["client_public"], folder / AUTHORIZED_DIR / "client.key"))
    except OSError as exc:
        raise UserError(f"{folder}: cannot write keys here ({exc.strerror or exc})") from None
    return paths


def _need_curve() -> None:
    if not zmq.has("curve"):
        raise UserError("this pyzmq/libzmq has no CurveZMQ support; install pyzmq from PyPI (its wheels have it)")


def _load_key(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not path.is_file():
        raise UserError(f"{path}: no such key file; create keys with `irstream keys {path.parent}`")
    try:
        public, private = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: not a ZeroMQ certificate ({exc}); create keys with `irstream keys`") from None
    if secret and private is None:
        raise UserError(f"{path}: holds no secret key; give the .key_secret file's folder")
    return public, private


def is_loopback(endpoint: str) -> bool:
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in LOOPBACK_HOSTS


class ZmqPublisher:
    """Sink that publishes each frame's message.

    hwm_msgs: messages queued per subscriber before ZeroMQ drops for it; higher rides out
        longer subscriber stalls at the cost of memory and staleness.
    wait_subscriber_s: before the first frame, wait up to this long for a subscriber; 0 = no wait.
    curve_dir: a folder from `irstream keys`: encrypt, and admit only authorised subscribers.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, topic: str = DEFAULT_TOPIC, hwm_msgs: int = 1000,
                 wait_subscriber_s: float = 0.0, include_tentative: bool = False, curve_dir: str = "") -> None:
        if "://" not in endpoint:  # said before the model loads, not after
            raise UserError(f"{endpoint}: an endpoint names its transport, e.g. tcp://{endpoint}", "output.publish")
        self.endpoint, self.topic = endpoint, topic.encode()
        self.curve_dir = Path(curve_dir) if curve_dir else None
        self._auth = None
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
        if self.curve_dir is not None:
            try:
                self._secure()
            except BaseException:
                self.close()
                raise
        elif not is_loopback(self.endpoint):
            log.warning("%s: publishing unencrypted to anyone who can reach this address; "
                        "use `irstream keys` and curve_dir to encrypt and authenticate", self.endpoint)
        try:
            self._sock.bind(self.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise UserError(f"{self.endpoint}: cannot bind ({exc}); pick a free port, "
                            "e.g. tcp://127.0.0.1:5557", "output.publish") from None
        if self.wait_subscriber_s > 0:
            log.warning("%s: waiting up to %g s for a subscriber before the first frame", self.endpoint,
                        self.wait_subscriber_s)
            if not self._sock.poll(int(self.wait_subscriber_s * 1000), zmq.POLLIN):
                log.warning("%s: no subscriber came; publishing anyway", self.endpoint)
                return
        self._drain_subscriptions()

    def _secure(self) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator

        _need_curve()
        public, secret = _load_key(self.curve_dir / "server.key_secret", secret=True)
        clients = self.curve_dir / AUTHORIZED_DIR
        try:
            # pyzmq's own loader would log a bad file and admit nobody, silently; load them here.
            allowed = zmq.auth.load_certificates(clients) if clients.is_dir() else {}
        except (ValueError, OSError) as exc:
            raise UserError(f"{clients}: a key file there is not a ZeroMQ certificate ({exc})") from None
        if not allowed:
            raise UserError(f"{clients}: no authorised client keys (*.key); copy each subscriber's public key there")
        # The authenticator answers the handshake from its own thread: a client whose public key
        # is not in the folder is refused before it can subscribe.
        self._auth = ThreadAuthenticator(self._ctx)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(clients))
        self._sock.curve_secretkey, self._sock.curve_publickey = secret, public
        self._sock.curve_server = True

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
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None:
            self._ctx.term()
        self._sock = self._ctx = self._auth = None


@dataclass
class Connection:
    """What a subscriber saw of its publisher: connected at least once, and whether the last
    thing it heard was the connection going away."""

    connected: bool = False
    gone: bool = False

    def on_event(self, event: int) -> None:
        if event == zmq.EVENT_CONNECTED:
            self.connected, self.gone = True, False
        elif event == zmq.EVENT_DISCONNECTED and self.connected:
            self.gone = True


def subscribe(endpoint: str, topic: str = DEFAULT_TOPIC, timeout_s: float | None = None, curve_dir: str = "",
              connection: Connection | None = None):
    """Yield (topic, payload bytes) from a publisher; stop after `timeout_s` of silence.
    curve_dir: a folder holding client.key_secret and the publisher's server.key.
    connection: filled in as the publisher connects and goes away (to tell a publisher that
    never came from one that left)."""
    keys = None
    if curve_dir:
        keys = (_load_key(Path(curve_dir) / "client.key_secret", secret=True),
                _load_key(Path(curve_dir) / "server.key", secret=False)[0])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if keys:
            _need_curve()
            try:
                (sock.curve_publickey, sock.curve_secretkey), sock.curve_serverkey = keys
            except zmq.ZMQError as exc:
                raise UserError(f"{curve_dir}: keys ZeroMQ does not accept ({exc}); create them with "
                                "`irstream keys`") from None
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            raise UserError(f"{endpoint}: not a ZeroMQ endpoint ({exc}); e.g. tcp://127.0.0.1:5556") from None
    except BaseException:
        sock.close()
        ctx.term()
        raise
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    conn = connection if connection is not None else Connection()
    try:
        deadline = time.monotonic() + timeout_s if timeout_s else None
        while True:
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(poller.poll(wait_ms))
            if monitor in ready:
                conn.on_event(zmq.utils.monitor.recv_monitor_message(monitor)["event"])
            if sock in ready:
                parts = sock.recv_multipart()
                deadline = time.monotonic() + timeout_s if timeout_s else None
                yield parts[0], parts[-1]
            elif not ready:
                return
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
        ctx.term()

