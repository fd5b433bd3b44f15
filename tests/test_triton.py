"""The triton runtime against a real Triton Inference Server (PyTriton's bundled tritonserver)
on 127.0.0.1.  PyTriton needs numpy < 2, so these run in an environment with the `serve` extra
(.ci/run makes one); elsewhere they skip, unless IRSTREAM_REQUIRE_TRITON is set."""

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from irstream.config import load_pipeline, override
from irstream.model.config import ModelConfig
from irstream.tools.loopback import free_port

HAVE = importlib.util.find_spec("pytriton") is not None and importlib.util.find_spec("tritonclient") is not None
if not HAVE and os.environ.get("IRSTREAM_REQUIRE_TRITON"):
    raise RuntimeError("IRSTREAM_REQUIRE_TRITON is set but pytriton/tritonclient are not installed")
pytestmark = [pytest.mark.slow, pytest.mark.triton,
              pytest.mark.skipif(not HAVE, reason="needs the serve extra (pytriton, tritonclient)")]

READY_S = 180.0
SKY = "synth:sky?seed=21&frames={n}&width=200&height=160"


class Server:
    """`irstream serve` in a subprocess on free ports; restartable on the same ports."""

    def __init__(self) -> None:
        self.ports = [free_port() for _ in range(3)]
        self.proc = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.ports[0]}"

    def start(self) -> "Server":
        g, h, m = self.ports
        self.proc = subprocess.Popen([sys.executable, "-c", "from irstream.cli import main; main()", "serve",
                                      "--device", "cpu", "--threads", "1", "--grpc-port", str(g),
                                      "--http-port", str(h), "--metrics-port", str(m)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # its own group: tritonserver dies with it
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "irstream serve exited"
            try:
                if client.is_model_ready("irstream"):
                    return self
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError("the server did not get ready")

    def kill(self) -> None:
        """The whole group at once, as a crash would: irstream serve and its tritonserver."""
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.kill()


def _config(runtime: str, url: str = "", **more):
    return override(load_pipeline(), **{"model.device": "cpu", "model.runtime": runtime, "model.triton_url": url or None,
                                        "run.threads": 1, **more})


def test_triton_maps_equal_the_local_ones(server):
    from irstream.detect.detector import Detector
    from irstream.io.sources import open_source

    remote = Detector(ModelConfig(device="cpu", runtime="triton", triton_url=server.url))
    local = Detector(ModelConfig(device="cpu", runtime="torch"))
    with open_source("sample_videos/sky_drones.mkv") as src:
        frames = [f for _, f in zip(range(4), src)]
    inter = union = 0
    for f in frames:
        a, b = remote(f).prob > 0.5, local(f).prob > 0.5
        inter, union = inter + int((a & b).sum()), union + int((a | b).sum())
    assert union > 0 and inter / union >= 0.99


def test_several_sources_through_triton_get_what_they_get_locally(server):
    from irstream.pipeline.run import Pipeline

    uris = [SKY.format(n=8), "synth:sky?seed=22&frames=6&width=160&height=128"]
    remote = list(Pipeline(_config("triton", server.url), uris))
    local = list(Pipeline(_config("torch"), uris))
    # Rounds take whatever each reader has ready, so the streams interleave differently per run.
    remote, local = (sorted(rs, key=lambda r: (r.stream, r.frame.index)) for rs in (remote, local))
    assert [(r.stream, r.frame.index) for r in remote] == [(r.stream, r.frame.index) for r in local]
    for a, b in zip(remote, local):
        assert len(a.detections) == len(b.detections)
        np.testing.assert_allclose(a.detections.centroid_xy, b.detections.centroid_xy, atol=0.05)


def test_bench_sources_measures_workers_on_triton(server, tmp_path):
    from irstream.data.synthetic import write_clip
    from irstream.tools.bench import bench_sources

    clip = tmp_path / "clip.mkv"
    write_clip(clip, 6, seed=3, shape=(96, 128))
    rows = bench_sources(str(clip), [1], 6, triton_url=server.url)
    assert set(rows) == {"1 x separate", "1 x triton"}
    assert rows["1 x triton"]["frames"] == 6 and rows["1 x triton"]["aggregate_fps"] > 0
    assert rows["1 x triton"]["x separate"] > 0


def test_a_server_restart_mid_run_loses_no_frame_and_is_counted():
    from irstream.pipeline.run import Pipeline

    s = Server().start()
    try:
        pipe = Pipeline(_config("triton", s.url, **{"source.uri": SKY.format(n=40)}))
        seen, restarted = [], threading.Event()

        def restart():
            s.kill()
            time.sleep(2.0)
            s.start()
            restarted.set()

        for res in pipe:
            seen.append(res.frame.index)
            if len(seen) == 5:
                threading.Thread(target=restart, daemon=True).start()
        assert restarted.is_set() and seen == list(range(40))
        rt = pipe.detector.segmenter.runtime
        assert rt.outages >= 1 and rt.retries >= 1
    finally:
        s.kill()
