"""The batch shape of one engine step, read from vLLM's ``SchedulerOutput``.

Pure bookkeeping, no vLLM import, so it is tested without vLLM. The fields are those the
step-cycle pack is keyed by (docs/step-cycle.md): scheduled tokens, scheduled requests, the
requests still in their prompt, and the context tokens (computed before the step) of the
scheduled requests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class StepShape:
    #: Σ tokens scheduled in the step (prompt chunks + decode tokens).
    tokens: int
    #: Requests scheduled in the step.
    reqs: int
    #: Scheduled requests past their prompt (computed ≥ prompt length).
    decode_reqs: int
    #: Σ tokens already computed of the scheduled requests (prefix-cache hits included).
    ctx: int
    #: Requests scheduled for the first time in this step.
    new_reqs: int
    #: Tokens of the requests still in their prompt.
    prefill_tokens: int


class PromptLengths:
    """Prompt length of each live request, learnt when the scheduler first sends it
    (``scheduled_new_reqs``) and forgotten when it finishes (``finished_req_ids``): cached
    requests carry only their computed-token count, and whether one is still in its prompt
    needs the prompt length."""

    def __init__(self) -> None:
        self._len: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._len)

    def shape(self, so) -> StepShape:
        lens = self._len
        for rid in so.finished_req_ids:
            lens.pop(rid, None)
        computed: dict[str, int] = {}
        for nr in so.scheduled_new_reqs:
            ids = nr.prompt_token_ids
            if ids is not None:
                plen = len(ids)
            else:
                emb = getattr(nr, "prompt_embeds", None)
                plen = int(emb.shape[0]) if emb is not None else 0
            lens[nr.req_id] = plen
            computed[nr.req_id] = nr.num_computed_tokens
        cached = so.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            computed[rid] = cached.num_computed_tokens[i]
        ctx = 0
        decode = 0
        prefill_tokens = 0
        for rid, n in so.num_scheduled_tokens.items():
            c = computed.get(rid, 0)
            ctx += c
            if c >= lens.get(rid, 0):
                decode += 1
            else:
                prefill_tokens += n
        return StepShape(
            tokens=so.total_num_scheduled_tokens,
            reqs=len(so.num_scheduled_tokens),
            decode_reqs=decode,
            ctx=ctx,
            new_reqs=len(so.scheduled_new_reqs),
            prefill_tokens=prefill_tokens,
        )


@dataclass(slots=True)
class CudaGraphPlan:
    """Which CUDA graph the model runner would use for a batch, predicted on the engine side
    from the compilation config (the runner's dispatcher lives in the worker process)."""

    #: ``cudagraph_mode`` of the compilation config, e.g. ``FULL_AND_PIECEWISE`` or ``NONE``.
    mode: str
    #: Capture sizes, ascending.
    sizes: list[int]
    enforce_eager: bool

    def plan(self, s: StepShape) -> tuple[str, int | None]:
        """(graph kind, padded token count): ``FULL`` for a decode-only batch when the mode has
        full decode graphs, ``PIECEWISE`` for other batches when it has piecewise graphs,
        ``NONE`` when eager; the padded size is the smallest capture size ≥ the tokens."""
        if self.enforce_eager or self.mode in ("NONE", "") or not self.sizes:
            return "NONE", None
        if s.tokens > self.sizes[-1]:
            return "NONE", None
        padded = next(x for x in self.sizes if x >= s.tokens)
        decode_only = s.decode_reqs == s.reqs and s.tokens == s.reqs
        if self.mode == "FULL" or (decode_only and "FULL" in self.mode):
            return "FULL", padded
        if "PIECEWISE" in self.mode:
            return "PIECEWISE", padded
        return "NONE", None
