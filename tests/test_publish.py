"""ZeroMQ out, with real sockets on 127.0.0.1: CurveZMQ keys admit the right subscriber only,
and a subscriber that stops reading never holds the publisher up."""

import threading
import time

import numpy as np
import pytest
import zmq
from typer.testing import CliRunner

from irstream.cli import app
from irstream.errors import UserError
from irstream.sinks.publish import ZmqPublisher, create_keys, is_loopback, subscribe
from irstream.types import Detections, Frame, FrameResult, Tracks

from test_pipeline import free_port

runner = CliRunner()
needs_curve = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CurveZMQ")


def _result(i: int, detections: int = 0) -> FrameResult:
    img = np.zeros((16, 20), np.uint8)
    xy = np.random.default_rng(i).uniform(0, 16, (detections, 2))
    dets = Detections(xy, np.zeros((detections, 4), np.int64), np.ones(detections, np.int64), np.full(detections, 0.9),
                      np.full(detections, 0.8), np.full(detections, 0.1))
    return FrameResult(Frame(img, i, i / 25, "test", 8), img / 255.0, dets, Tracks.empty(), {})


def _collect(endpoint, curve_dir, out: list, seconds: float):
    def run():
        for _topic, payload in subscribe(endpoint, "irstream", seconds, curve_dir):
            out.append(payload)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _publish(pub: ZmqPublisher, n: int, settle_s: float = 0.5):
    time.sleep(settle_s)  # let subscribers finish their handshake
    for i in range(n):
        pub.write(_result(i))
        time.sleep(0.002)


@needs_curve
def test_curve_feed_reaches_the_authorised_subscriber_only(tmp_path):
    keys, other = tmp_path / "keys", tmp_path / "other"
    create_keys(keys)
    create_keys(other)
    # The stranger knows the server's public key but holds an unauthorised client key.
    (other / "server.key").write_bytes((keys / "server.key").read_bytes())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = ZmqPublisher(endpoint, curve_dir=str(keys))
    pub.open()
    good, stranger, plain = [], [], []
    threads = [_collect(endpoint, str(keys), good, 1.5), _collect(endpoint, str(other), stranger, 1.5),
               _collect(endpoint, "", plain, 1.5)]
    try:
        _publish(pub, 20)
    finally:
        for t in threads:
            t.join(5)
        pub.close()
    assert len(good) == 20 and b'"frame":19' in good[-1]
    assert stranger == [] and plain == []


@needs_curve
def test_keys_command_writes_pairs_and_never_overwrites(tmp_path):
    result = runner.invoke(app, ["keys", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    names = sorted(p.relative_to(tmp_path / "k").as_posix() for p in (tmp_path / "k").rglob("*") if p.is_file())
    assert names == ["authorized_clients/client.key", "client.key", "client.key_secret", "server.key", "server.key_secret"]
    again = runner.invoke(app, ["keys", str(tmp_path / "k")])
    assert again.exit_code == 2 and "already exists" in again.output


def test_missing_keys_are_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no such key file"):
        ZmqPublisher(f"tcp://127.0.0.1:{free_port()}", curve_dir=str(tmp_path)).open()
    result = runner.invoke(app, ["listen", "tcp://127.0.0.1:1", "--curve-dir", str(tmp_path), "--timeout", "0.1"])
    assert result.exit_code == 2 and "irstream keys" in result.output and "Traceback" not in result.output


def test_a_stopped_subscriber_never_slows_the_publisher():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = ZmqPublisher(endpoint, hwm_msgs=50)
    pub.open()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 50)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    try:
        time.sleep(0.3)
        # The subscriber reads nothing while 1,000 frames of 200 detections (~30 kB each) go out:
        # far past both high-water marks and the kernel's socket buffers.
        n, results = 1000, [_result(i, detections=200) for i in range(10)]
        worst = 0.0
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            pub.write(results[i % 10])
            worst = max(worst, time.perf_counter() - t)
        total = time.perf_counter() - t0
        assert pub.sent == n
        # Sends are non-blocking: the whole burst takes what serialising it takes, and no single
        # send waits on the subscriber.  A blocked send would wait for ever, so bounds far above
        # the ~1 s this takes keep the test's power on a loaded or starved CI machine.
        assert total < 30.0 and worst < 5.0
        # Then it reads again: it gets what the queues held; the rest was dropped, not waited for.
        got = 0
        while sub.poll(200):
            sub.recv_multipart()
            got += 1
        assert 0 < got < n
    finally:
        sub.close(0)
        ctx.term()
        pub.close()


def test_loopback_endpoints():
    assert is_loopback("tcp://127.0.0.1:5556") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://*:5556") and not is_loopback("tcp://0.0.0.0:5556")


@needs_curve
def test_secret_keys_are_private_and_a_bad_authorised_key_is_refused(tmp_path):
    keys = tmp_path / "keys"
    paths = create_keys(keys)
    assert paths["server_secret"].stat().st_mode & 0o077 == 0 and paths["client_secret"].stat().st_mode & 0o077 == 0
    (keys / "authorized_clients" / "broken.key").write_text("not a certificate\n")
    with pytest.raises(UserError, match="not a ZeroMQ certificate"):
        ZmqPublisher(f"tcp://127.0.0.1:{free_port()}", curve_dir=str(keys)).open()


@needs_curve
def test_listen_with_a_malformed_key_is_one_line(tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys)
    (keys / "server.key").write_text('metadata\ncurve\n    public-key = "tooshort"\n')
    result = runner.invoke(app, ["listen", "tcp://127.0.0.1:1", "--curve-dir", str(keys), "--timeout", "0.1"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "irstream keys" in result.output
