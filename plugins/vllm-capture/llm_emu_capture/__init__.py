"""Capture of vLLM engine steps for llm-emu's step-cycle packs.

Loaded by vLLM through the ``vllm.general_plugins`` entry point in each of its processes. It
does nothing unless ``LLM_EMU_CAPTURE`` names an output file; then the engine-core process
records one JSON line per engine step (batch shape, device time, cycle time) in the step-record
format ``llm-emu profile-pack`` reads (see docs/step-cycle.md, "Capturing from vLLM").

No vLLM file is patched: ``register()`` wraps ``EngineCore``'s step methods so that each engine
core, at its first step, has its scheduler's ``schedule`` and its executor's ``execute_model`` /
``sample_tokens`` wrapped on the instance (``hooks``).
"""

from __future__ import annotations

import os

ENV_PATH = "LLM_EMU_CAPTURE"

_registered = False


def register() -> None:
    """The ``vllm.general_plugins`` entry point. Idempotent: vLLM may call it more than once."""
    global _registered
    if _registered or not os.environ.get(ENV_PATH):
        return
    _registered = True
    from . import hooks

    hooks.install()
