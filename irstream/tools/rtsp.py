"""A real RTSP server run beside irstream (tests, `irstream bench soak --rtsp`): the GStreamer
server of rtsp_server.py in its own process, started, killed and restarted from here."""

from __future__ import annotations

import functools
import select
import subprocess
import tempfile
import time
from pathlib import Path

from irstream.errors import UserError

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
#: Interpreters that may have GStreamer's Python bindings (Debian's python3-gi installs them
#: for the system Python, not for a virtual environment).
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
#: What to install where none has them.
PACKAGES = ("gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good "
            "gstreamer1.0-plugins-bad")
#: Seconds a starting server may take to listen.
START_TIMEOUT_S = 20.0


@functools.cache
def gst_python() -> str | None:
    """A Python that can run the GStreamer RTSP server, or None."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    for exe in SYSTEM_PYTHONS:
        if Path(exe).is_file() and subprocess.run([exe, "-c", probe], capture_output=True).returncode == 0:
            return exe
    return None


class RtspServer:
    """`with RtspServer(clip, port) as server:` serves clip (H.264 in MP4) at server.url, looped;
    `kill()` and `start()` take it down and bring it back on the same port, as a camera that
    reboots."""

    def __init__(self, clip: str | Path, port: int, path: str = "/cam") -> None:
        if gst_python() is None:
            raise UserError(f"no Python with GStreamer's RTSP server bindings here; install {PACKAGES}")
        self.clip, self.port, self.path = str(clip), port, path
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        # The stream encoded at the first start, read back by every restart.
        self._cache_dir = tempfile.TemporaryDirectory(prefix="irstream-rtsp-")

    def __enter__(self) -> "RtspServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
        self._cache_dir.cleanup()

    def start(self) -> None:
        # Its warnings go to a file, not a pipe nobody reads: a full pipe would block the server.
        self._log = tempfile.TemporaryFile(mode="w+")
        cache = Path(self._cache_dir.name) / "stream.h264"
        self._proc = subprocess.Popen([gst_python(), str(SERVER_SCRIPT), "--port", str(self.port), "--path", self.path,
                                       "--cache", str(cache), self.clip], stdout=subprocess.PIPE, stderr=self._log, text=True)
        ready = select.select([self._proc.stdout], [], [], START_TIMEOUT_S)[0]
        line = self._proc.stdout.readline() if ready else ""  # "ready ..." once it listens
        if not line.startswith("ready"):
            self.kill()
            self._log.seek(0)
            raise UserError(f"RTSP server for {self.clip} did not start on port {self.port} within "
                            f"{START_TIMEOUT_S:g} s: {self._log.read().strip()[-300:]}")

    def kill(self) -> None:
        """SIGKILL: the server dies as a crashed camera does, without closing its sessions."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            self._proc.stdout.close()
            self._log.close()
        self._proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.kill()
        time.sleep(down_s)
        self.start()
        self.restarts += 1
