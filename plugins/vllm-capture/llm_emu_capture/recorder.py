"""Per-step records: the batch shape when a step is handed to the executor, the device and
cycle times when its output is ready, one JSON line per step.

Independent of vLLM's classes (duck-typed scheduler outputs and futures), so it is tested
without vLLM; ``hooks`` connects it to an engine core.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from .clock import StepClock
from .shape import CudaGraphPlan, PromptLengths, StepShape
from .writer import LineWriter

_now = time.perf_counter


class _Step:
    __slots__ = ("shape", "t_sched", "sched_s", "t_sub", "finished")

    def __init__(self, shape: StepShape, t_sched: float, sched_s: float, t_sub: float):
        self.shape = shape
        self.t_sched = t_sched
        self.sched_s = sched_s
        self.t_sub = t_sub
        self.finished = False


class Recorder:
    """Follows one engine core's steps.

    Call order, as the engine core makes it: ``scheduled`` (after ``Scheduler.schedule``),
    ``submitted`` around ``execute_model``, ``sampling`` around ``sample_tokens``. A step is
    finished by the first of its results that is a model output (``execute_model`` returns
    ``None`` when sampling follows in ``sample_tokens``); results may be futures, finished on
    whatever thread completes them, in step order.
    """

    def __init__(self, writer: LineWriter, cudagraphs: CudaGraphPlan | None = None):
        self.writer = writer
        self.cudagraphs = cudagraphs
        self.lens = PromptLengths()
        self.clock = StepClock()
        self._lock = threading.Lock()
        self._sched: tuple[object, float, float] | None = None
        self._last: _Step | None = None
        #: Steps recorded and seconds spent recording them (engine-side overhead).
        self.steps = 0
        self.overhead_s = 0.0

    # ---------------------------------------------------------------- engine-thread calls
    def scheduled(self, so, t_start: float, t_end: float) -> None:
        self._sched = (so, t_start, t_end - t_start)

    def submitted(self, so, t_sub: float) -> _Step | None:
        """Called just before ``execute_model(so)``; the step to pass to ``result``."""
        t0 = _now()
        sched = self._sched
        if sched is not None and sched[0] is so:
            t_sched, sched_s = sched[1], sched[2]
        else:
            t_sched, sched_s = t_sub, 0.0
        self._sched = None
        shape = self.lens.shape(so)
        step = None
        if shape.tokens > 0:
            step = _Step(shape, t_sched, sched_s, t_sub)
        self._last = step
        self.overhead_s += _now() - t0
        return step

    def result(self, step: _Step | None, r) -> None:
        """The return value of ``execute_model`` or ``sample_tokens`` for ``step``."""
        if step is None:
            return
        if isinstance(r, Future):
            r.add_done_callback(lambda f: self._done_future(step, f))
        elif r is not None:
            self._finish(step, _now())

    def sampling(self) -> _Step | None:
        """Called before ``sample_tokens``: it samples the latest submitted step."""
        step, self._last = self._last, None
        return step

    # -------------------------------------------------------------- completion (any thread)
    def _done_future(self, step: _Step, f: Future) -> None:
        t = _now()
        if f.cancelled() or f.exception() is not None or f.result() is None:
            return
        self._finish(step, t)

    def _finish(self, step: _Step, done: float) -> None:
        t0 = _now()
        with self._lock:
            if step.finished:
                return
            step.finished = True
            dev_us = self.clock.device_s(step.t_sub, done) * 1e6
            s = step.shape
            if self.cudagraphs is not None:
                cg, padded = self.cudagraphs.plan(s)
            else:
                cg, padded = "NONE", None
            self.writer.put(
                f'{{"tokens":{s.tokens},"reqs":{s.reqs},"decode_reqs":{s.decode_reqs},'
                f'"ctx":{s.ctx},"lat_us":{max(dev_us, 0.1):.1f},'
                f'"cycle_us":{(done - step.t_sched) * 1e6:.1f},'
                f'"sched_us":{step.sched_s * 1e6:.1f},"new_reqs":{s.new_reqs},'
                f'"prefill_tokens":{s.prefill_tokens},"cg":"{cg}",'
                f'"padded":{"null" if padded is None else padded},"t":{done:.6f}}}\n'
            )
            self.steps += 1
            self.overhead_s += _now() - t0

    def summary(self) -> str:
        w = self.writer
        mean = self.overhead_s / self.steps * 1e6 if self.steps else 0.0
        return (
            f"{self.steps} steps captured to {w.path} ({w.dropped} dropped, buffer "
            f"{w.capacity}); capture overhead {mean:.1f} us/step"
        )
