"""Unit tests of the capture's bookkeeping, without vLLM: python3 -m unittest discover -s tests"""

import json
import os
import tempfile
import threading
import unittest
from concurrent.futures import Future
from types import SimpleNamespace as NS

from llm_emu_capture.clock import StepClock
from llm_emu_capture.recorder import Recorder
from llm_emu_capture.shape import CudaGraphPlan, PromptLengths, StepShape
from llm_emu_capture.writer import LineWriter


def new_req(rid, plen, computed=0):
    return NS(req_id=rid, prompt_token_ids=list(range(plen)), num_computed_tokens=computed)


def sched_out(new=(), cached=(), sched=None, finished=()):
    """cached: (req_id, num_computed_tokens) pairs; sched: req_id -> scheduled tokens."""
    sched = dict(sched or {})
    return NS(
        scheduled_new_reqs=list(new),
        scheduled_cached_reqs=NS(
            req_ids=[r for r, _ in cached], num_computed_tokens=[c for _, c in cached]
        ),
        num_scheduled_tokens=sched,
        total_num_scheduled_tokens=sum(sched.values()),
        finished_req_ids=set(finished),
    )


class ShapeTest(unittest.TestCase):
    def test_prefill_chunk_then_decode(self):
        lens = PromptLengths()
        # a: 100-token prompt, first chunk of 60; b: 10-token prompt, whole, 4 cached.
        s = lens.shape(sched_out(new=[new_req("a", 100), new_req("b", 10, 4)],
                                 sched={"a": 60, "b": 6}))
        self.assertEqual((s.tokens, s.reqs, s.decode_reqs, s.ctx), (66, 2, 0, 4))
        self.assertEqual((s.new_reqs, s.prefill_tokens), (2, 66))
        # a continues its prompt (60 of 100 computed), b decodes.
        s = lens.shape(sched_out(cached=[("a", 60), ("b", 10)], sched={"a": 40, "b": 1}))
        self.assertEqual((s.tokens, s.reqs, s.decode_reqs, s.ctx), (41, 2, 1, 70))
        self.assertEqual((s.new_reqs, s.prefill_tokens), (0, 40))
        # both decode.
        s = lens.shape(sched_out(cached=[("a", 100), ("b", 11)], sched={"a": 1, "b": 1}))
        self.assertEqual((s.decode_reqs, s.ctx, s.prefill_tokens), (2, 111, 0))
        # finished requests are forgotten.
        lens.shape(sched_out(finished=["a", "b"]))
        self.assertEqual(len(lens), 0)

    def test_preempted_request_recomputing_is_prefill(self):
        lens = PromptLengths()
        lens.shape(sched_out(new=[new_req("a", 50)], sched={"a": 50}))
        s = lens.shape(sched_out(cached=[("a", 0)], sched={"a": 55}))
        self.assertEqual(s.decode_reqs, 0)


class CudaGraphTest(unittest.TestCase):
    def test_plan(self):
        decode = StepShape(tokens=3, reqs=3, decode_reqs=3, ctx=0, new_reqs=0, prefill_tokens=0)
        mixed = StepShape(tokens=70, reqs=3, decode_reqs=2, ctx=0, new_reqs=1, prefill_tokens=68)
        big = StepShape(tokens=900, reqs=3, decode_reqs=2, ctx=0, new_reqs=1, prefill_tokens=898)
        p = CudaGraphPlan("FULL_AND_PIECEWISE", [1, 2, 4, 8, 16, 32, 64, 128, 512], False)
        self.assertEqual(p.plan(decode), ("FULL", 4))
        self.assertEqual(p.plan(mixed), ("PIECEWISE", 128))
        self.assertEqual(p.plan(big), ("NONE", None))
        p = CudaGraphPlan("FULL_DECODE_ONLY", [1, 2, 4, 8, 128], False)
        self.assertEqual(p.plan(decode), ("FULL", 4))
        self.assertEqual(p.plan(mixed), ("NONE", None))
        p = CudaGraphPlan("FULL_AND_PIECEWISE", [1, 2, 4], True)
        self.assertEqual(p.plan(decode), ("NONE", None))


class ClockTest(unittest.TestCase):
    def test_back_to_back_and_idle(self):
        c = StepClock()
        self.assertAlmostEqual(c.device_s(1.0, 1.5), 0.5)  # idle device
        self.assertAlmostEqual(c.device_s(1.2, 2.0), 0.5)  # queued behind the first
        self.assertAlmostEqual(c.device_s(3.0, 3.25), 0.25)  # idle again


class RecorderTest(unittest.TestCase):
    def setUp(self):
        fd, self.path = tempfile.mkstemp(suffix=".jsonl")
        os.close(fd)

    def tearDown(self):
        os.unlink(self.path)

    def lines(self):
        with open(self.path) as f:
            return [json.loads(x) for x in f]

    def test_futures_finished_on_another_thread_in_order(self):
        w = LineWriter(self.path, interval_s=0.05)
        rec = Recorder(w)
        futs = []
        for k in range(3):
            so = sched_out(new=[new_req(f"r{k}", 8)], sched={f"r{k}": 8})
            rec.scheduled(so, 10.0 + k, 10.0 + k)
            step = rec.submitted(so, 10.0 + k)
            ex = Future()  # execute_model: None, sampling follows
            rec.result(step, ex)
            ex.set_result(None)
            f = Future()
            rec.result(rec.sampling(), f)
            futs.append(f)
        t = threading.Thread(target=lambda: [f.set_result(object()) for f in futs])
        t.start()
        t.join()
        w.close()
        got = self.lines()
        self.assertEqual(len(got), 3)
        for g in got:
            self.assertEqual((g["tokens"], g["reqs"], g["decode_reqs"]), (8, 1, 0))
            self.assertGreater(g["lat_us"], 0)
            self.assertIn(g["cg"], ("NONE",))
        self.assertEqual(rec.steps, 3)

    def test_same_future_from_both_calls_counts_once_and_empty_steps_are_skipped(self):
        w = LineWriter(self.path)
        rec = Recorder(w)
        so = sched_out(new=[new_req("a", 4)], sched={"a": 4})
        step = rec.submitted(so, 1.0)
        f = Future()
        rec.result(step, f)
        rec.result(rec.sampling(), f)
        f.set_result(object())
        empty = sched_out()
        self.assertIsNone(rec.submitted(empty, 2.0))
        w.close()
        self.assertEqual(len(self.lines()), 1)

    def test_bounded_buffer_drops_and_counts(self):
        w = LineWriter(self.path, capacity=2, interval_s=3600)
        for i in range(5):
            w.put(f'{{"i":{i}}}\n')
        self.assertEqual(w.dropped, 3)
        w.close()
        self.assertEqual([x["i"] for x in self.lines()], [0, 1])


if __name__ == "__main__":
    unittest.main()
