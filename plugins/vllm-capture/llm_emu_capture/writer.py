"""A bounded buffer of JSON lines, written by a background thread.

The engine thread only appends a ready line to a deque (a few hundred nanoseconds); a daemon
thread writes the buffer out every ``interval_s`` seconds, and ``close()`` (called at engine
shutdown and at interpreter exit) writes what is left. When the buffer holds ``capacity``
lines the newest line is dropped and counted rather than letting memory grow: a capture that
cannot keep up with the engine loses records, never the engine's time.
"""

from __future__ import annotations

import collections
import threading


class LineWriter:
    def __init__(self, path: str, capacity: int = 65536, interval_s: float = 0.5):
        self.path = path
        self.capacity = max(1, capacity)
        self.dropped = 0
        self.written = 0
        self._buf: collections.deque[str] = collections.deque()
        self._f = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # serialises writes to the file
        self._stop = threading.Event()
        self._interval = interval_s
        self._t = threading.Thread(target=self._run, name="llm-emu-capture", daemon=True)
        self._t.start()

    def put(self, line: str) -> None:
        # deque.append and len are atomic under the GIL; the bound is approximate by at most
        # the lines appended between the check and the append, which is one thread's worth.
        if len(self._buf) >= self.capacity:
            self.dropped += 1
            return
        self._buf.append(line)

    def flush(self) -> None:
        with self._lock:
            if self._f is None:
                return
            out = []
            buf = self._buf
            while buf:
                out.append(buf.popleft())
            if out:
                self._f.write("".join(out))
                self._f.flush()
                self.written += len(out)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None
