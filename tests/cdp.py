"""A headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
open a page, let it run, read values from it, take a screenshot.  No driver, no websocket
library: the protocol is JSON messages ending in NUL on the browser's fds 3 (in) and 4 (out)."""

from __future__ import annotations

import base64
import json
import os
import subprocess


class Chromium:
    def __init__(self, exe: str, width: int = 700, height: int = 760) -> None:
        cmd_r, self._cmd_w = os.pipe()  # the browser reads commands on its fd 3
        self._res_r, res_w = os.pipe()  # and writes replies on its fd 4

        def fds() -> None:
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self._proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                       "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
                                      preexec_fn=fds, close_fds=False,  # closing would happen after fds() moved the pipes
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._id, self._buf, self.session = 0, b"", None

    def call(self, method: str, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def value(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self, path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        self._proc.wait(10)
        os.close(self._cmd_w)
        os.close(self._res_r)
