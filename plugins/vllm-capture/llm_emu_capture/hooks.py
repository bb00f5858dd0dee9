"""Connects a ``Recorder`` to vLLM's engine core (vLLM 0.19 V1 engine).

``install()`` wraps ``EngineCore.step``, ``EngineCore.step_with_batch_queue`` and
``EngineCore.shutdown`` (class attributes, replaced once per process). At its first step each
engine core gets its own recorder and has three bound methods wrapped on the instance: ``scheduler.schedule`` (when scheduling started and how
long it took), ``model_executor.execute_model`` (the batch shape, when the step was handed over)
and ``model_executor.sample_tokens`` (the step's output). Both ``EngineCore.step`` and
``EngineCore.step_with_batch_queue`` (async scheduling) go through these three calls, as does
any executor (multiprocessing, uniprocess, Ray, or an external class given to
``--distributed-executor-backend``). Nothing in the model runner is touched, so worker
processes are unaffected.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import time

from . import ENV_PATH
from .recorder import Recorder
from .shape import CudaGraphPlan
from .writer import LineWriter

logger = logging.getLogger("vllm.llm_emu_capture")  # under vLLM's handler

ENV_BUFFER = "LLM_EMU_CAPTURE_BUFFER"

_now = time.perf_counter


def _output_path(vllm_config) -> str:
    """The capture file; one per engine core when data parallelism runs several."""
    path = os.environ[ENV_PATH]
    pc = getattr(vllm_config, "parallel_config", None)
    if pc is not None and getattr(pc, "data_parallel_size", 1) > 1:
        path = f"{path}.dp{getattr(pc, 'data_parallel_rank', 0)}"
    return path


def _cudagraph_plan(vllm_config) -> CudaGraphPlan | None:
    try:
        cc = vllm_config.compilation_config
        mode = getattr(cc.cudagraph_mode, "name", str(cc.cudagraph_mode))
        sizes = sorted(int(x) for x in (cc.cudagraph_capture_sizes or []))
        eager = bool(getattr(vllm_config.model_config, "enforce_eager", False))
        return CudaGraphPlan(mode=mode or "NONE", sizes=sizes, enforce_eager=eager)
    except AttributeError:
        return None


def attach(core) -> Recorder:
    """Starts recording the steps of one engine core."""
    cfg = core.vllm_config
    cap = int(os.environ.get(ENV_BUFFER) or 65536)
    writer = LineWriter(_output_path(cfg), capacity=cap)
    rec = Recorder(writer, _cudagraph_plan(cfg))

    sched = core.scheduler
    schedule = sched.schedule

    @functools.wraps(schedule)
    def schedule_w(*a, **k):
        t0 = _now()
        out = schedule(*a, **k)
        rec.scheduled(out, t0, _now())
        return out

    sched.schedule = schedule_w

    ex = core.model_executor
    execute_model = ex.execute_model
    sample_tokens = ex.sample_tokens

    @functools.wraps(execute_model)
    def execute_model_w(scheduler_output, *a, **k):
        step = rec.submitted(scheduler_output, _now())
        r = execute_model(scheduler_output, *a, **k)
        rec.result(step, r)
        return r

    @functools.wraps(sample_tokens)
    def sample_tokens_w(*a, **k):
        step = rec.sampling()
        r = sample_tokens(*a, **k)
        rec.result(step, r)
        return r

    ex.execute_model = execute_model_w
    ex.sample_tokens = sample_tokens_w
    atexit.register(close, rec)
    logger.info("llm-emu capture: recording engine steps to %s", writer.path)
    return rec


_closed: set[int] = set()


def close(rec: Recorder) -> None:
    if id(rec) in _closed:
        return
    _closed.add(id(rec))
    rec.writer.close()
    logger.info("llm-emu capture: %s", rec.summary())


def _attach_on_first_step(step):
    """Wraps ``EngineCore.step`` / ``step_with_batch_queue``: the first call attaches the
    recorder, then points the core's ``step_fn`` at the unwrapped method, so later steps pay
    nothing for this wrapper. (vLLM loads general plug-ins inside ``EngineCore.__init__``, after
    the instance exists and before it picks its ``step_fn``; wrapping ``__init__`` would miss the
    very core whose construction loads the plug-in.)"""

    @functools.wraps(step)
    def first_step(self, *a, **k):
        if getattr(self, "_llm_emu_capture", None) is None:
            try:
                self._llm_emu_capture = attach(self)
            except Exception:  # a capture failure must not stop the server
                self._llm_emu_capture = False
                logger.exception("llm-emu capture: not recording")
            if getattr(self.step_fn, "__func__", None) is first_step:
                self.step_fn = step.__get__(self)
        return step(self, *a, **k)

    return first_step


def install() -> None:
    from vllm.v1.engine.core import EngineCore

    if getattr(EngineCore, "_llm_emu_capture_installed", False):
        return
    shutdown = EngineCore.shutdown

    @functools.wraps(shutdown)
    def shutdown_w(self, *a, **k):
        try:
            return shutdown(self, *a, **k)
        finally:
            rec = getattr(self, "_llm_emu_capture", None)
            if rec:
                close(rec)

    EngineCore.step = _attach_on_first_step(EngineCore.step)
    EngineCore.step_with_batch_queue = _attach_on_first_step(EngineCore.step_with_batch_queue)
    EngineCore.shutdown = shutdown_w
    EngineCore._llm_emu_capture_installed = True
