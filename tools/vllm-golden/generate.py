#!/usr/bin/env python3
"""Record golden scheduler traces from vLLM 0.19.0's real engine core.

Drives vLLM's own ``EngineCore`` (``step_with_batch_queue`` when async scheduling is on, ``step``
otherwise), its ``Scheduler`` / ``AsyncScheduler`` and ``KVCacheManager`` in *virtual* time through
a set of scenarios and writes one JSON file per scenario to ``crates/core/tests/golden/``.
Only the executor is replaced: ``VirtualExecutor`` never touches a device, it resolves step futures
against a virtual clock. The contract (file layout, driver loop, token and latency rules) is
``docs/golden-format.md``.

Usage (see README.md):
    ~/.cache/vllm-reference/venv/bin/python tools/vllm-golden/generate.py [--out DIR] [--only NAME ...]
"""

from __future__ import annotations

import os
import sys

# Deterministic str hashing (set iteration inside vLLM, NONE_HASH of the prefix-cache hash chain)
# and the no-GPU platform plug-in must be in place before vLLM is imported.
if os.environ.get("PYTHONHASHSEED") != "0" or os.environ.get("VLLM_EMUREF") != "1":
    env = dict(os.environ, PYTHONHASHSEED="0", VLLM_EMUREF="1")
    os.execve(sys.executable, [sys.executable, *sys.argv], env)

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import collections  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from concurrent.futures import Future  # noqa: E402
from functools import cached_property  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

import vllm  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.v1.engine import EngineCoreRequest  # noqa: E402
from vllm.v1.engine.core import EngineCore  # noqa: E402
from vllm.v1.executor.abstract import Executor  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, SlidingWindowSpec  # noqa: E402
from vllm.v1.outputs import EMPTY_MODEL_RUNNER_OUTPUT, ModelRunnerOutput  # noqa: E402
from vllm.v1.request import RequestStatus  # noqa: E402

VLLM_VERSION = "0.19.0"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "crates" / "core" / "tests" / "golden"
QWEN_EOS = 151645


def _model_dir() -> str:
    for cand in (
        os.environ.get("VLLM_GOLDEN_MODEL"),
        os.path.expanduser("~/.cache/vllm-reference/model/qwen3-8b"),
        str(REPO / "shared" / "tools" / "vllm-reference" / "model" / "qwen3-8b"),
        "/work/shared/tools/vllm-reference/model/qwen3-8b",
    ):
        if cand and os.path.isfile(os.path.join(cand, "config.json")):
            return cand
    raise SystemExit("no Qwen3-8B config.json found; set VLLM_GOLDEN_MODEL=<dir with config.json>")


# ---------------------------------------------------------------------------------------------
# Virtual time
# ---------------------------------------------------------------------------------------------


class Runtime:
    """Virtual clock + scenario state shared by the executor, the recorder and the driver."""

    def __init__(self, scenario: dict):
        self.scenario = scenario
        self.clock = 0  # integer ns
        self.reqs = {r["request_id"]: r for r in scenario["requests"]}
        self.aborts = [dict(a, applied=False) for a in scenario["aborts"]]
        self.engine: EngineCore | None = None
        self.events: list[dict] = []
        self.pending_schedule_event: dict | None = None

    def due_aborts(self) -> list[str]:
        """Abort ids due at the current clock and not applied yet (file order); marks them applied."""
        ids = []
        for a in self.aborts:
            if not a["applied"] and a["at_ns"] <= self.clock:
                a["applied"] = True
                ids.append(a["request_id"])
        return ids

    def on_engine_blocked(self) -> None:
        """Called by a virtual future's result(): aborts that arrived while the engine was blocked
        go onto EngineCore.aborts_queue, as EngineCoreProc.process_input_sockets does."""
        for rid in self.due_aborts():  # one client ABORT message per abort entry
            self.engine.aborts_queue.put_nowait([rid])


class VirtualFuture(Future):
    """A future resolved by the virtual clock: done() iff clock >= end; result() advances it."""

    def __init__(self, rt: Runtime, end_ns: int, value: Any):
        super().__init__()
        self._rt = rt
        self._end = end_ns
        self._value = value

    def done(self) -> bool:
        return self._rt.clock >= self._end

    def result(self, timeout=None):
        if self._rt.clock < self._end:
            self._rt.clock = self._end
        self._rt.on_engine_blocked()
        return self._value


class VirtualExecutor(Executor):
    """vLLM v1 Executor with a virtual in-order device stream and scripted sampled tokens."""

    uses_ray: bool = False
    supports_pp: bool = False
    current_rt: Runtime | None = None  # set by the driver before EngineCore is built

    def _init_executor(self) -> None:
        rt = VirtualExecutor.current_rt
        assert rt is not None
        self.rt = rt
        mc, pc = self.model_config, self.parallel_config
        self.num_layers = mc.get_num_layers(pc)
        self.num_kv_heads = mc.get_num_kv_heads(pc)
        self.head_size = mc.get_head_size()
        lat = rt.scenario["config"]["latency"]
        self.base_ns = int(lat["base_us"]) * 1000
        self.per_token_ns = int(lat["per_token_us"]) * 1000
        self.device_free_ns = 0
        self.num_sampled: dict[str, int] = {}
        self._pending: VirtualFuture | None = None

    @cached_property
    def max_concurrent_batches(self) -> int:
        return 2 if self.scheduler_config.async_scheduling else 1

    @classmethod
    def supports_async_scheduling(cls) -> bool:
        return True

    @cached_property
    def supported_tasks(self):
        return ("generate",)

    # KV cache: one group, full attention or (config "sliding_window") every layer within one
    # window, as vLLM builds a model whose layers all share a window; the block count is
    # num_gpu_blocks_override.
    def _spec(self) -> FullAttentionSpec | SlidingWindowSpec:
        window = self.rt.scenario["config"].get("sliding_window")
        common = dict(
            block_size=self.cache_config.block_size,
            num_kv_heads=self.num_kv_heads,
            head_size=self.head_size,
            dtype=torch.bfloat16,
        )
        if window is not None:
            return SlidingWindowSpec(sliding_window=window, **common)
        return FullAttentionSpec(**common)

    def get_kv_cache_specs(self):
        spec = self._spec()
        return [{f"model.layers.{i}.self_attn.attn": spec for i in range(self.num_layers)}]

    def determine_available_memory(self) -> list[int]:
        page = self._spec().page_size_bytes * self.num_layers
        return [int(self.cache_config.num_gpu_blocks_override) * page]

    def initialize_from_config(self, kv_cache_configs) -> None:
        return None

    # Execution
    def _sample(self, req_id: str) -> int:
        spec = self.rt.reqs[req_id]
        k = self.num_sampled.get(req_id, 0)
        self.num_sampled[req_id] = k + 1
        script = spec["output_token_ids"]
        tok = script[k] if k < len(script) else 100000 + k
        if k < spec["min_tokens"] and (
            tok == spec["eos_token_id"] or tok in spec["stop_token_ids"]
        ):
            tok = 200000 + k
        return tok

    def execute_model(self, scheduler_output, non_block: bool = False):
        rt = self.rt
        so = scheduler_output
        ev = rt.pending_schedule_event
        rt.pending_schedule_event = None
        if so.total_num_scheduled_tokens == 0:
            if ev is not None:
                ev["step_end_ns"] = rt.clock
            self._pending = None
            fut = VirtualFuture(rt, rt.clock, EMPTY_MODEL_RUNNER_OUTPUT)
            return fut if non_block else fut.result()

        requests = rt.engine.scheduler.requests
        req_ids = list(so.num_scheduled_tokens.keys())
        sampled: list[list[int]] = []
        for rid in req_ids:
            # is_prefill_chunk was set by the scheduler in _update_after_schedule.
            if requests[rid].is_prefill_chunk:
                sampled.append([])
            else:
                sampled.append([self._sample(rid)])
        out = ModelRunnerOutput(
            req_ids=req_ids,
            req_id_to_index={rid: i for i, rid in enumerate(req_ids)},
            sampled_token_ids=sampled,
        )
        latency = self.base_ns + self.per_token_ns * so.total_num_scheduled_tokens
        start = max(rt.clock, self.device_free_ns)
        end = start + latency
        self.device_free_ns = end
        if ev is not None:
            ev["step_end_ns"] = end
        # Like the GPU model runner: execute_model yields None, sample_tokens yields the output.
        self._pending = VirtualFuture(rt, end, out)
        fut = VirtualFuture(rt, end, None)
        return fut if non_block else fut.result()

    def sample_tokens(self, grammar_output, non_block: bool = False):
        fut = self._pending
        assert fut is not None, "sample_tokens without execute_model"
        self._pending = None
        return fut if non_block else fut.result()

    def take_draft_token_ids(self):
        return None

    def execute_dummy_batch(self) -> None:
        return None

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None,
                       non_block: bool = False, single_value: bool = False):
        name = method if isinstance(method, str) else getattr(method, "__name__", "?")
        res: Any = ("generate",) if name == "get_supported_tasks" else None
        value = res if single_value else [res]
        if non_block:
            f: Future = Future()
            f.set_result(value)
            return f
        return value

    def check_health(self) -> None:
        return None

    def profile(self, is_start: bool = True, profile_prefix: str | None = None):
        return None

    def shutdown(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# Recording (instance monkeypatches on the real scheduler / KV cache manager)
# ---------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, rt: Runtime, engine: EngineCore):
        self.rt = rt
        self.engine = engine
        sched = engine.scheduler
        kvm = sched.kv_cache_manager
        self.sched = sched
        self.kvm = kvm
        # cumulative prefix cache stats: sums of the per-interval PrefixCacheStats objects
        # that vLLM hands out (and resets) in make_prefix_cache_stats().
        self.cum = {"queries": 0, "hits": 0, "preempted_queries": 0, "preempted_hits": 0}
        self.preempt_order: list[str] = []

        orig_make = kvm.make_prefix_cache_stats

        def make_prefix_cache_stats():
            st = orig_make()
            if st is not None:
                for k in self.cum:
                    self.cum[k] += getattr(st, k)
            return st

        kvm.make_prefix_cache_stats = make_prefix_cache_stats

        orig_preempt = sched._preempt_request

        def _preempt_request(request, timestamp):
            self.preempt_order.append(request.request_id)
            return orig_preempt(request, timestamp)

        sched._preempt_request = _preempt_request

        orig_schedule = sched.schedule

        def schedule():
            t = rt.clock
            self.preempt_order = []
            so = orig_schedule()
            self._record_schedule(t, so)
            return so

        sched.schedule = schedule

        orig_update = sched.update_from_output

        def update_from_output(scheduler_output, model_runner_output):
            t = rt.clock
            outs = orig_update(scheduler_output, model_runner_output)
            self._record_update(t, scheduler_output, outs)
            return outs

        sched.update_from_output = update_from_output

        orig_finish = sched.finish_requests

        def finish_requests(request_ids, finished_status):
            if finished_status != RequestStatus.FINISHED_ABORTED:
                return orig_finish(request_ids, finished_status)
            t = rt.clock
            ids = [request_ids] if isinstance(request_ids, str) else list(request_ids or ())
            live = []
            for rid in ids:
                r = sched.requests.get(rid)
                if r is not None and not r.is_finished() and rid not in live:
                    live.append(rid)
            res = orig_finish(request_ids, finished_status)
            if live:
                rt.events.append({
                    "kind": "abort", "t_ns": t, "request_ids": live,
                    "num_free_blocks": kvm.block_pool.get_num_free_blocks(),
                })
            return res

        sched.finish_requests = finish_requests

    def _prefix_totals(self) -> dict:
        cur = self.kvm.prefix_cache_stats
        tot = dict(self.cum)
        if cur is not None:
            for k in tot:
                tot[k] += getattr(cur, k)
        return tot

    def _counts(self) -> dict:
        running, waiting = self.sched.get_request_counts()
        return {
            "num_running": running,
            "num_waiting": waiting,
            "num_free_blocks": self.kvm.block_pool.get_num_free_blocks(),
        }

    def _record_schedule(self, t: int, so) -> None:
        scheduled = [[rid, n] for rid, n in so.num_scheduled_tokens.items()]
        # computed tokens at admission (NewRequestData / CachedRequestData are built before
        # _update_after_schedule advances num_computed_tokens)
        admitted_nct = {nr.req_id: nr.num_computed_tokens for nr in so.scheduled_new_reqs}
        cached = so.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            if rid in cached.resumed_req_ids:
                admitted_nct[rid] = cached.num_computed_tokens[i]
        admitted = [[rid, admitted_nct[rid]] for rid in so.num_scheduled_tokens if rid in admitted_nct]
        assert len(admitted) == len(admitted_nct)
        assert set(self.preempt_order) == set(so.preempted_req_ids)
        pt = self._prefix_totals()
        ev = {
            "kind": "schedule", "t_ns": t, "step_end_ns": None,
            "scheduled": scheduled, "preempted": list(self.preempt_order), "admitted": admitted,
            **self._counts(),
            "prefix_queries": pt["queries"], "prefix_hits": pt["hits"],
            "preempted_prefix_queries": pt["preempted_queries"],
            "preempted_prefix_hits": pt["preempted_hits"],
        }
        self.rt.events.append(ev)
        self.rt.pending_schedule_event = ev

    def _record_update(self, t: int, so, outs) -> None:
        tokens, finished = [], []
        for client in sorted(outs):
            for o in outs[client].outputs:
                assert len(o.new_token_ids) <= 1, o
                for tok in o.new_token_ids:
                    tokens.append([o.request_id, tok])
                if o.finish_reason is not None:
                    finished.append([o.request_id, str(o.finish_reason)])
        self.rt.events.append({
            "kind": "update", "t_ns": t, "tokens": tokens, "finished": finished,
            **self._counts(),
        })


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def build_engine(rt: Runtime) -> EngineCore:
    c = rt.scenario["config"]
    VirtualExecutor.current_rt = rt
    args = EngineArgs(
        model=_model_dir(),
        skip_tokenizer_init=True,
        load_format="dummy",
        dtype="bfloat16",
        seed=0,
        enforce_eager=True,
        generation_config="vllm",
        distributed_executor_backend=VirtualExecutor,
        block_size=c["block_size"],
        num_gpu_blocks_override=c["num_gpu_blocks"],
        max_num_seqs=c["max_num_seqs"],
        max_num_batched_tokens=c["max_num_batched_tokens"],
        max_model_len=c["max_model_len"],
        enable_prefix_caching=c["enable_prefix_caching"],
        enable_chunked_prefill=c["enable_chunked_prefill"],
        long_prefill_token_threshold=c["long_prefill_token_threshold"],
        scheduling_policy=c["scheduling_policy"],
        async_scheduling=c["async_scheduling"],
        scheduler_reserve_full_isl=c["scheduler_reserve_full_isl"],
    )
    vc = args.create_engine_config()
    engine = EngineCore(vc, executor_class=VirtualExecutor, log_stats=True)
    rt.engine = engine

    # The recorded config must be what vLLM actually runs with.
    sc, cc = vc.scheduler_config, vc.cache_config
    assert vc.compilation_config.cudagraph_mode.name == "NONE"
    assert cc.num_gpu_blocks == c["num_gpu_blocks"], cc.num_gpu_blocks
    assert engine.scheduler.kv_cache_manager.block_pool.num_gpu_blocks == c["num_gpu_blocks"]
    assert cc.block_size == c["block_size"]
    assert bool(cc.enable_prefix_caching) == c["enable_prefix_caching"]
    assert sc.max_num_seqs == c["max_num_seqs"]
    assert sc.max_num_batched_tokens == c["max_num_batched_tokens"]
    assert vc.model_config.max_model_len == c["max_model_len"]
    assert bool(sc.enable_chunked_prefill) == c["enable_chunked_prefill"]
    assert sc.long_prefill_token_threshold == c["long_prefill_token_threshold"]
    assert sc.policy == c["scheduling_policy"]
    assert sc.scheduler_reserve_full_isl == c["scheduler_reserve_full_isl"]
    assert sc.max_num_partial_prefills == 1 and vc.speculative_config is None
    assert bool(sc.async_scheduling) == c["async_scheduling"]
    assert engine.async_scheduling == c["async_scheduling"]
    assert (engine.batch_queue is not None) == c["async_scheduling"]
    want_step = EngineCore.step_with_batch_queue if c["async_scheduling"] else EngineCore.step
    assert engine.step_fn.__func__ is want_step
    want = "AsyncScheduler" if c["async_scheduling"] else "Scheduler"
    assert type(engine.scheduler).__name__ == want, type(engine.scheduler)
    managers = engine.scheduler.kv_cache_manager.coordinator.single_type_managers
    want = "SlidingWindowManager" if c.get("sliding_window") else "FullAttentionManager"
    assert [type(m).__name__ for m in managers] == [want], managers
    return engine


def make_request(engine: EngineCore, spec: dict):
    sp = SamplingParams(
        max_tokens=spec["max_tokens"],
        min_tokens=spec["min_tokens"],
        ignore_eos=spec["ignore_eos"],
        stop_token_ids=list(spec["stop_token_ids"]),
        temperature=0.0,
    )
    # As InputProcessor.process_inputs does (no generation_config fields here).
    sp.update_from_generation_config({}, spec["eos_token_id"])
    ecr = EngineCoreRequest(
        request_id=spec["request_id"],
        prompt_token_ids=list(spec["prompt_token_ids"]),
        mm_features=None,
        sampling_params=sp,
        pooling_params=None,
        arrival_time=spec["arrival_ns"] / 1e9,
        lora_request=None,
        cache_salt=spec["cache_salt"],
        data_parallel_rank=None,
        priority=spec["priority"],
    )
    request, _wave = engine.preprocess_add_request(ecr)
    return request


def run_scenario(scenario: dict, max_steps: int = 200000) -> list[dict]:
    rt = Runtime(scenario)
    engine = build_engine(rt)
    Recorder(rt, engine)
    sched = engine.scheduler
    pending = list(scenario["requests"])  # file order

    def has_work() -> bool:  # EngineCoreProc.has_work without DP
        return sched.has_requests() or bool(engine.batch_queue)

    steps = 0
    while True:
        # 1) input queue: arrivals (file order), then aborts, everything due by now
        still = []
        for spec in pending:
            if spec["arrival_ns"] <= rt.clock:
                engine.add_request(make_request(engine, spec))
            else:
                still.append(spec)
        pending = still
        for rid in rt.due_aborts():
            # EngineCoreProc._handle_client_request(ABORT): one call per client message.
            engine.abort_requests([rid])
        if not has_work():
            nxt = [s["arrival_ns"] for s in pending]
            nxt += [a["at_ns"] for a in rt.aborts if not a["applied"]]
            if not nxt:
                break
            rt.clock = max(rt.clock, min(nxt))
            continue
        # 2) one engine step, vLLM's own step function
        _outputs, model_executed = engine.step_fn()
        engine.post_step(model_executed)
        steps += 1
        assert steps < max_steps, "runaway scenario"
    assert not sched.requests, sched.requests.keys()
    engine.shutdown()
    VirtualExecutor.current_rt = None
    return rt.events


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def base_config(**kw) -> dict:
    c = {
        "block_size": 16, "num_gpu_blocks": 256, "max_num_seqs": 8, "max_num_batched_tokens": 256,
        "max_model_len": 2048, "enable_prefix_caching": True, "enable_chunked_prefill": True,
        "long_prefill_token_threshold": 0, "scheduling_policy": "fcfs", "async_scheduling": True,
        "scheduler_reserve_full_isl": True,
        "latency": {"base_us": 1000, "per_token_us": 10},
    }
    c.update(kw)
    return c


class Gen:
    """Deterministic token material for a scenario."""

    def __init__(self, seed: int):
        self.rnd = random.Random(seed)

    def toks(self, n: int) -> list[int]:
        return [self.rnd.randrange(1000, 90000) for _ in range(n)]


def req(rid, arrival_ns, prompt, max_tokens, *, script=None, gen=None, min_tokens=0,
        ignore_eos=False, eos=QWEN_EOS, stop=(), priority=0, salt=None) -> dict:
    if script is None:
        script = gen.toks(max_tokens)
    return {
        "request_id": rid, "arrival_ns": int(arrival_ns), "prompt_token_ids": list(prompt),
        "max_tokens": max_tokens, "min_tokens": min_tokens, "ignore_eos": ignore_eos,
        "eos_token_id": eos, "stop_token_ids": list(stop), "priority": priority,
        "cache_salt": salt, "output_token_ids": list(script),
    }


MS = 1_000_000


def sc_chunked_prefill() -> dict:
    g = Gen(1)
    return {
        "scenario": "chunked_prefill",
        "description": "long prompts (300-1000 tokens) chunked through a 64-token budget, "
                       "interleaved with decodes and a short late prompt",
        "config": base_config(max_num_batched_tokens=64, num_gpu_blocks=256),
        "requests": [
            req("r0", 0, g.toks(300), 12, gen=g),
            req("r1", 0, g.toks(1000), 8, gen=g),
            req("r2", 2 * MS, g.toks(517), 10, gen=g),
            req("r3", 5 * MS, g.toks(40), 20, gen=g),
            req("r4", 30 * MS, g.toks(129), 6, gen=g),
        ],
        "aborts": [],
    }


def sc_no_chunked_prefill() -> dict:
    g = Gen(2)
    return {
        "scenario": "no_chunked_prefill",
        "description": "chunked prefill off: whole prompts only, a prompt that does not fit the "
                       "remaining budget blocks the waiting queue",
        "config": base_config(enable_chunked_prefill=False, max_num_batched_tokens=256,
                              max_model_len=256, num_gpu_blocks=128),
        "requests": [
            req("r0", 0, g.toks(200), 10, gen=g),
            req("r1", 0, g.toks(150), 12, gen=g),
            req("r2", 0, g.toks(40), 16, gen=g),
            req("r3", 1 * MS, g.toks(100), 8, gen=g),
            req("r4", 1 * MS, g.toks(230), 6, gen=g),
            req("r5", 3 * MS, g.toks(60), 10, gen=g),
            req("r6", 3 * MS, g.toks(17), 5, gen=g),
        ],
        "aborts": [],
    }


def sc_long_prefill_threshold() -> dict:
    g = Gen(3)
    return {
        "scenario": "long_prefill_threshold",
        "description": "long_prefill_token_threshold=48 caps each prefill chunk below the "
                       "128-token budget so several prefills share a step",
        "config": base_config(max_num_batched_tokens=128, long_prefill_token_threshold=48),
        "requests": [
            req("r0", 0, g.toks(300), 8, gen=g),
            req("r1", 0, g.toks(200), 10, gen=g),
            req("r2", 0, g.toks(40), 12, gen=g),
            req("r3", 2 * MS, g.toks(500), 6, gen=g),
            req("r4", 4 * MS, g.toks(47), 9, gen=g),
        ],
        "aborts": [],
    }


def sc_prefix_sharing() -> dict:
    g = Gen(4)
    P = g.toks(256)  # common prefix, 16 full blocks
    r0_prompt = P + g.toks(40)
    salted = g.toks(10)
    short = g.toks(32)  # exact multiple of block_size
    return {
        "scenario": "prefix_sharing",
        "description": "requests sharing a 256-token prefix hit the cache after r0 computed it; "
                       "cache_salt requests miss the unsalted blocks; exact block-multiple "
                       "prompts recompute their last block",
        "config": base_config(max_num_batched_tokens=256, num_gpu_blocks=256),
        "requests": [
            req("r0", 0, r0_prompt, 40, gen=g),
            req("s0", 1 * MS, short, 4, gen=g),
            req("r1", 20 * MS, P + g.toks(30), 10, gen=g),
            req("r2", 21 * MS, P + g.toks(70), 10, gen=g),
            req("salt_b", 22 * MS, P + salted, 8, gen=g, salt="tenant-b"),
            req("exact", 30 * MS, P, 6, gen=g),
            req("same_as_r0", 40 * MS, r0_prompt, 5, gen=g),
            req("salt_b2", 60 * MS, P + salted, 5, gen=g, salt="tenant-b"),
            req("salt_c", 61 * MS, P + salted, 5, gen=g, salt="tenant-c"),
            req("s1", 62 * MS, short, 3, gen=g),
        ],
        "aborts": [],
    }


def sc_kv_pressure() -> dict:
    g = Gen(5)
    return {
        "scenario": "kv_pressure_preemption",
        "description": "24 KV blocks for four growing decodes: FCFS preempts the newest running "
                       "request (recompute), which later resumes with prefix-cache hits",
        "config": base_config(num_gpu_blocks=24, max_num_batched_tokens=256, max_model_len=384),
        "requests": [
            req("r0", 0, g.toks(64), 120, gen=g),
            req("r1", 0, g.toks(64), 120, gen=g),
            req("r2", 0, g.toks(70), 100, gen=g),
            req("r3", 0, g.toks(50), 110, gen=g),
            req("r4", 20 * MS, g.toks(33), 40, gen=g),
        ],
        "aborts": [],
    }


def sc_priority() -> dict:
    g = Gen(6)
    return {
        "scenario": "priority_preemption",
        "description": "priority scheduling under KV pressure: the running request with the "
                       "largest (priority, arrival) is preempted; waiting queue ordered by priority",
        "config": base_config(num_gpu_blocks=24, max_num_batched_tokens=256, max_model_len=384,
                              scheduling_policy="priority"),
        "requests": [
            req("p1_a", 0, g.toks(64), 100, gen=g, priority=1),
            req("p0_a", 0, g.toks(60), 100, gen=g, priority=0),
            req("p2_a", 0, g.toks(48), 100, gen=g, priority=2),
            req("p1_b", 1 * MS, g.toks(40), 90, gen=g, priority=1),
            req("p0_b", 15 * MS, g.toks(30), 40, gen=g, priority=0),
            req("p3_a", 16 * MS, g.toks(20), 20, gen=g, priority=3),
            req("pm1", 40 * MS, g.toks(36), 30, gen=g, priority=-1),
        ],
        "aborts": [],
    }


def sc_max_num_seqs() -> dict:
    g = Gen(7)
    reqs = [req(f"r{i}", 0, g.toks(g.rnd.randrange(20, 90)), g.rnd.randrange(3, 30), gen=g)
            for i in range(12)]
    reqs.append(req("late", 10 * MS, g.toks(25), 5, gen=g))
    return {
        "scenario": "max_num_seqs_saturation",
        "description": "13 requests, max_num_seqs=4: admission waits for running slots",
        "config": base_config(max_num_seqs=4, max_num_batched_tokens=256),
        "requests": reqs,
        "aborts": [],
    }


def sc_stops() -> dict:
    g = Gen(8)
    E = QWEN_EOS
    t = g.toks
    return {
        "scenario": "stops",
        "description": "max_tokens, EOS, EOS suppressed by min_tokens, stop_token_ids, "
                       "ignore_eos with EOS in the script, script exhaustion, max_model_len cap, "
                       "max_tokens=1 and EOS as first token",
        "config": base_config(max_model_len=256, max_num_batched_tokens=256),
        "requests": [
            req("len6", 0, t(20), 6, script=t(10)),
            req("eos4", 0, t(25), 20, script=t(3) + [E] + t(5)),
            req("min_eos", 0, t(30), 20, min_tokens=5, script=t(1) + [E] + t(4) + [E] + t(3)),
            req("stop_id", 1 * MS, t(18), 20, stop=(777, 778), script=t(2) + [778] + t(4)),
            req("min_stop_id", 1 * MS, t(22), 20, min_tokens=4, stop=(888,),
                script=[888] + t(2) + [888] + t(1) + [888] + t(2)),
            req("ignore_eos", 2 * MS, t(16), 8, ignore_eos=True, script=t(2) + [E] + t(2) + [E]),
            req("short_script", 2 * MS, t(12), 7, script=t(3)),
            req("max_model_len", 3 * MS, t(240), 50, script=t(5)),
            req("max1", 3 * MS, t(31), 1, script=t(4)),
            req("eos_first", 4 * MS, t(15), 10, script=[E] + t(3)),
            req("eos_at_max", 4 * MS, t(15), 4, script=t(3) + [E]),
            req("min_eq_max", 5 * MS, t(9), 3, min_tokens=3, script=[E, E, E, E]),
            # vLLM's min-tokens processor forbids EOS even with ignore_eos (all_stop_token_ids)
            req("ignore_eos_min", 5 * MS, t(11), 6, min_tokens=3, ignore_eos=True,
                script=[E, t(1)[0], E, E, t(1)[0]]),
        ],
        "aborts": [],
    }


def sc_abort() -> dict:
    g = Gen(9)
    return {
        "scenario": "abort",
        "description": "aborts of a waiting request, a request mid-prefill, a running request "
                       "mid-decode, two aborts landing during one step (one batched abort call), an "
                       "unknown id, an already finished request, and (engine idle) a request "
                       "aborted by the driver at its arrival time",
        "config": base_config(max_num_seqs=3, max_num_batched_tokens=64),
        "requests": [
            req("run", 0, g.toks(20), 200, gen=g),
            req("prefill", 0, g.toks(800), 10, gen=g),
            req("other", 0, g.toks(30), 60, gen=g),
            req("wait", 1 * MS, g.toks(24), 10, gen=g),
            req("late", 2 * MS, g.toks(40), 12, gen=g),
            req("done", 3 * MS, g.toks(10), 2, gen=g),
            req("pair_a", 3 * MS, g.toks(12), 100, gen=g),
            req("pair_b", 3 * MS, g.toks(14), 100, gen=g),
            req("idle_abort", 200 * MS, g.toks(50), 5, gen=g),
            req("after", 200 * MS, g.toks(20), 3, gen=g),
        ],
        "aborts": [
            {"request_id": "wait", "at_ns": 5 * MS},
            {"request_id": "prefill", "at_ns": 9 * MS + 500_000},
            {"request_id": "ghost", "at_ns": 12 * MS},
            {"request_id": "pair_a", "at_ns": 40 * MS},
            {"request_id": "pair_b", "at_ns": 40 * MS + 100},
            {"request_id": "run", "at_ns": 120 * MS},
            {"request_id": "done", "at_ns": 150 * MS},
            {"request_id": "idle_abort", "at_ns": 200 * MS},
        ],
    }


def sc_random(seed: int, n: int, policy: str = "fcfs", max_out: int = 80, gap_ms: float = 2.5,
              **cfg) -> dict:
    rnd = random.Random(seed)
    g = Gen(seed * 1000 + 17)
    bs = 16
    prefixes = [g.toks(rnd.choice([32, 64, 100, 128])) for _ in range(4)]
    salts = [None, None, None, "a", "b"]
    reqs = []
    t = 0
    for i in range(n):
        t += int(rnd.expovariate(1.0 / gap_ms) * MS) if rnd.random() < 0.8 else 0
        if rnd.random() < 0.45:
            prompt = list(rnd.choice(prefixes)) + g.toks(rnd.randrange(1, 120))
        else:
            prompt = g.toks(rnd.randrange(4, 250))
        if rnd.random() < 0.1:  # an exact block multiple
            prompt = prompt[: max(bs, len(prompt) // bs * bs)]
            if len(prompt) < bs:
                prompt = prompt + g.toks(bs - len(prompt))
        max_tokens = rnd.randrange(1, max_out + 1)
        script = g.toks(rnd.randrange(0, max_tokens + 4))
        if script and rnd.random() < 0.25:
            script[rnd.randrange(len(script))] = QWEN_EOS
        stop = ()
        if rnd.random() < 0.1 and script:
            s = script[rnd.randrange(len(script))]
            stop = (s,)
        min_tokens = rnd.randrange(0, max_tokens + 1) if rnd.random() < 0.15 else 0
        reqs.append(req(
            f"q{i}", t, prompt, max_tokens, script=script, min_tokens=min_tokens,
            ignore_eos=rnd.random() < 0.1, stop=stop,
            priority=rnd.randrange(0, 3) if policy == "priority" else 0,
            salt=rnd.choice(salts) if rnd.random() < 0.3 else None,
        ))
    aborts = []
    for j in rnd.sample(range(n), 3):
        aborts.append({"request_id": f"q{j}",
                       "at_ns": reqs[j]["arrival_ns"] + rnd.randrange(0, 40) * MS})
    aborts.sort(key=lambda a: a["at_ns"])
    num_gpu_blocks = cfg.pop("num_gpu_blocks", 64)
    # vLLM refuses a KV cache smaller than one max_model_len sequence.
    config = base_config(num_gpu_blocks=num_gpu_blocks,
                         max_num_seqs=cfg.pop("max_num_seqs", 16),
                         max_num_batched_tokens=cfg.pop("max_num_batched_tokens", 128),
                         max_model_len=min(1024, num_gpu_blocks * bs),
                         scheduling_policy=policy, **cfg)
    return {
        "scenario": f"random_{seed}",
        "description": f"seeded random workload (seed {seed}): {n} requests, shared prefixes, "
                       f"salts, mixed stops, 3 aborts, KV pressure ({config['num_gpu_blocks']} "
                       f"blocks), policy {policy}",
        "config": config,
        "requests": reqs,
        "aborts": aborts,
    }


def sc_sliding_window() -> dict:
    g = Gen(8)
    P = g.toks(320)  # common prefix, 20 full blocks
    first = P + g.toks(50)
    return {
        "scenario": "sliding_window",
        "description": "every layer within a 64-token window (vLLM's SlidingWindowManager): "
                       "blocks behind the window are freed while requests prefill in 64-token "
                       "chunks and decode, so 48 blocks hold what full attention could not; "
                       "prefix hits are the rightmost cached run covering the window, with "
                       "null blocks before it, and blocks freed behind a window stay cached",
        "config": base_config(sliding_window=64, num_gpu_blocks=48, max_num_batched_tokens=64,
                              max_num_seqs=6, max_model_len=1024),
        "requests": [
            req("r0", 0, first, 120, gen=g),
            req("r1", 1 * MS, g.toks(500), 60, gen=g),
            req("r2", 2 * MS, g.toks(40), 300, gen=g, ignore_eos=True),
            req("same_prefix", 150 * MS, P + g.toks(90), 20, gen=g),
            req("same_as_r0", 160 * MS, first, 10, gen=g),
            req("exact", 170 * MS, P, 8, gen=g),
            req("short_hit", 180 * MS, P[:48] + g.toks(5), 8, gen=g),
            req("r3", 181 * MS, g.toks(600), 140, gen=g, ignore_eos=True),
            req("r4", 182 * MS, g.toks(260), 250, gen=g, ignore_eos=True),
            req("r5", 183 * MS, g.toks(30), 280, gen=g, ignore_eos=True),
        ],
        "aborts": [{"request_id": "r4", "at_ns": 400 * MS}],
    }


def all_scenarios() -> list[dict]:
    base = [
        sc_chunked_prefill(),
        sc_no_chunked_prefill(),
        sc_long_prefill_threshold(),
        sc_prefix_sharing(),
        sc_kv_pressure(),
        sc_priority(),
        sc_max_num_seqs(),
        sc_stops(),
        sc_abort(),
        sc_random(1, 50, num_gpu_blocks=40, max_out=60),
        sc_random(2, 40, long_prefill_token_threshold=40, max_num_batched_tokens=96,
                  num_gpu_blocks=32, max_out=60),
        sc_random(3, 60, policy="priority", num_gpu_blocks=32, max_num_seqs=12, max_out=50),
        sc_sliding_window(),
        sc_random(4, 60, num_gpu_blocks=24, max_out=120, sliding_window=48),
    ]
    out = []
    for s in base:
        out.append(s)
    for s in base:  # sync (async scheduling off) variant of every scenario
        s2 = copy.deepcopy(s)
        s2["scenario"] = s["scenario"] + "_sync"
        s2["description"] = s["description"] + " [async scheduling off]"
        s2["config"]["async_scheduling"] = False
        out.append(s2)
    return out


# ---------------------------------------------------------------------------------------------
# Sanity checks of a recorded trace (independent of vLLM internals)
# ---------------------------------------------------------------------------------------------


def expected_token(spec: dict, k: int) -> int:
    script = spec["output_token_ids"]
    tok = script[k] if k < len(script) else 100000 + k
    if k < spec["min_tokens"] and (tok == spec["eos_token_id"] or tok in spec["stop_token_ids"]):
        tok = 200000 + k
    return tok


def check_trace(scenario: dict, events: list[dict]) -> dict:
    c = scenario["config"]
    lat = c["latency"]
    specs = {r["request_id"]: r for r in scenario["requests"]}
    toks: dict[str, list[int]] = {rid: [] for rid in specs}
    finished: dict[str, str] = {}
    t_prev = 0
    device_free = 0
    summary = {"steps": 0, "empty_steps": 0, "preemptions": 0, "aborted": []}
    for e in events:
        assert e["t_ns"] >= t_prev, ("time went backwards", e)
        t_prev = e["t_ns"]
        assert e.get("num_running", 0) <= c["max_num_seqs"]
        if e["kind"] == "schedule":
            summary["steps"] += 1
            n = sum(x[1] for x in e["scheduled"])
            assert n <= c["max_num_batched_tokens"]
            if n == 0:
                summary["empty_steps"] += 1
                assert e["step_end_ns"] == e["t_ns"]
            else:
                start = max(e["t_ns"], device_free)
                assert e["step_end_ns"] == start + lat["base_us"] * 1000 + lat["per_token_us"] * 1000 * n
                device_free = e["step_end_ns"]
            summary["preemptions"] += len(e["preempted"])
            for rid, _ in e["scheduled"]:
                assert rid not in finished, ("scheduled after finish", rid)
        elif e["kind"] == "update":
            for rid, tok in e["tokens"]:
                assert rid not in finished
                assert tok == expected_token(specs[rid], len(toks[rid])), (rid, tok)
                toks[rid].append(tok)
            for rid, why in e["finished"]:
                assert rid not in finished
                finished[rid] = why
        elif e["kind"] == "abort":
            for rid in e["request_ids"]:
                assert rid not in finished
                finished[rid] = "abort"
                summary["aborted"].append(rid)
    assert set(finished) == set(specs), set(specs) - set(finished)
    last = events[-1]
    assert last["num_running"] == 0 and last["num_waiting"] == 0
    assert last["num_free_blocks"] == c["num_gpu_blocks"] - 1  # block 0 is vLLM's null block
    for rid, why in finished.items():
        s, out = specs[rid], toks[rid]
        if why == "abort":
            assert len(out) < s["max_tokens"]
            continue
        assert out, rid
        stop_hit = len(out) > s["min_tokens"] and (
            (out[-1] == s["eos_token_id"] and not s["ignore_eos"]) or out[-1] in s["stop_token_ids"])
        length_hit = (len(out) >= s["max_tokens"]
                      or len(s["prompt_token_ids"]) + len(out) >= c["max_model_len"])
        assert why == ("stop" if stop_hit else "length") and (stop_hit or length_hit), (rid, why, out)
    s_ev = [e for e in events if e["kind"] == "schedule"]
    summary["finish"] = dict(sorted(collections.Counter(finished.values()).items()))
    summary["prefix"] = [s_ev[-1]["prefix_queries"], s_ev[-1]["prefix_hits"],
                         s_ev[-1]["preempted_prefix_queries"], s_ev[-1]["preempted_prefix_hits"]]
    return summary


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _j(x) -> str:
    return json.dumps(x, separators=(", ", ": "))


def render(scenario: dict, events: list[dict]) -> str:
    lines = ["{"]
    lines.append(f'  "vllm_version": {_j(VLLM_VERSION)},')
    lines.append(f'  "scenario": {_j(scenario["scenario"])},')
    lines.append(f'  "description": {_j(scenario["description"])},')
    lines.append(f'  "config": {_j(scenario["config"])},')

    def arr(name, items, last=False):
        if not items:
            lines.append(f'  "{name}": []' + ("" if last else ","))
            return
        lines.append(f'  "{name}": [')
        for i, it in enumerate(items):
            lines.append("    " + _j(it) + ("," if i + 1 < len(items) else ""))
        lines.append("  ]" + ("" if last else ","))

    arr("requests", scenario["requests"])
    arr("aborts", scenario["aborts"])
    arr("events", events, last=True)
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", help="scenario names to (re)generate")
    args = ap.parse_args()
    assert vllm.__version__ == VLLM_VERSION, f"need vLLM {VLLM_VERSION}, got {vllm.__version__}"
    args.out.mkdir(parents=True, exist_ok=True)
    for s in all_scenarios():
        if args.only and s["scenario"] not in args.only:
            continue
        events = run_scenario(s)
        for e in events:
            assert e.get("step_end_ns", 0) is not None, e
        summ = check_trace(s, events)
        text = render(s, events)
        path = args.out / f"{s['scenario']}.json"
        path.write_text(text)
        print(f"{path.name}: {len(events)} events, {summ['steps']} steps "
              f"({summ['empty_steps']} empty), {summ['preemptions']} preemptions, "
              f"aborted {summ['aborted']}, finish {summ['finish']}, "
              f"prefix q/h/pq/ph {summ['prefix']}, {len(text) // 1024} KiB", flush=True)


if __name__ == "__main__":
    main()
