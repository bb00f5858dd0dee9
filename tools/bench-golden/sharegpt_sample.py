"""Golden ShareGPT samples from vLLM 0.19's own `ShareGPTDataset` (seeded shuffle, length filter,
request ids, oversampling), for crates/bench/tests/sharegpt_golden.rs.

    ~/.cache/vllm-reference/venv/bin/python tools/bench-golden/sharegpt_sample.py TOKENIZER_JSON OUT_DIR

Writes OUT_DIR/sharegpt_small.json (a deterministic synthetic dataset: 80 conversations of varied
lengths, some with one turn, some too short or too long) and OUT_DIR/sharegpt_small_golden.json
(for each seed and output-length setting: the sampled requests as [request_id, prompt_len,
expected_output_len, prompt]).
"""
import json
import random
import sys

from transformers import PreTrainedTokenizerFast
from vllm.benchmarks.datasets import ShareGPTDataset

tok_path, out = sys.argv[1], sys.argv[2]
tok = PreTrainedTokenizerFast(tokenizer_file=tok_path)

words = ("the quick brown fox jumps over lazy dog while seven wizards quietly hex "
         "jumbo pyramids and a daft pig munches vexing quiz boxes").split()
rng = random.Random(1234)


def text(n):
    return " ".join(rng.choice(words) for _ in range(n))


entries = []
for i in range(80):
    plen = rng.choice([1, 2, 5, 20, 80, 300, 900, 1200])
    clen = rng.choice([1, 3, 10, 50, 400, 1500])
    turns = [{"from": "human", "value": text(plen)}]
    if i % 9 != 4:
        turns.append({"from": "gpt", "value": text(clen)})
        if i % 3 == 0:
            turns.append({"from": "human", "value": "more"})
    entries.append({"id": f"c{i}", "conversations": turns})
with open(f"{out}/sharegpt_small.json", "w") as f:
    json.dump(entries, f, indent=1)

golden = []
for seed, num, output_len in [(0, 20, None), (7, 20, None), (0, 60, None), (3, 10, 32)]:
    ds = ShareGPTDataset(random_seed=seed, dataset_path=f"{out}/sharegpt_small.json")
    s = ds.sample(tokenizer=tok, num_requests=num, output_len=output_len, request_id_prefix="r-")
    golden.append({
        "seed": seed, "num_requests": num, "output_len": output_len,
        "requests": [[r.request_id, r.prompt_len, r.expected_output_len, r.prompt] for r in s],
    })
with open(f"{out}/sharegpt_small_golden.json", "w") as f:
    json.dump(golden, f, indent=1)
print(f"{len(entries)} conversations, {len(golden)} samples")
