"""The real `mailflow serve` process on a free port, for end-to-end tests."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from .appliance import serve_env

_LISTENING = re.compile(r"MailFlow is listening on (http://\S+)")
_SETUP = re.compile(r"(http://\S+/setup/\S+)")


class LiveServer:
    """Starts `python -m appliance.cli serve` with its own data dir and key; port 0 means
    the server picks a free port and prints it, so there is no find-a-free-port race."""

    def __init__(self, root: Path, **env: str):
        self.root = root
        self.env = serve_env(root, **env)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.setup_link: str | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []

    def start(self, timeout: float = 20) -> "LiveServer":
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def pump(stream, lines, watch):
            for line in stream:
                lines.append(line.rstrip("\n"))
                if watch and (m := _SETUP.search(line)):
                    self.setup_link = m.group(1)
                if watch and (m := _LISTENING.search(line)):
                    self.url = m.group(1)

        threading.Thread(target=pump, args=(self.proc.stdout, self.stdout_lines, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, self.stderr_lines, False), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailflow serve exited {self.proc.returncode}: {self.output()}")
            if self.url and any("server.started" in l for l in self.stderr_lines):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mailflow serve did not start in {timeout}s: {self.output()}")

    def output(self) -> str:
        return "\n".join(self.stdout_lines + self.stderr_lines)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=10, allow_redirects=False, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, timeout=10, allow_redirects=False, **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
