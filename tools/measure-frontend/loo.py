#!/usr/bin/env python3
"""Leave-one-out check of a front-end latency file written by measure.py.

    python3 tools/measure-frontend/loo.py [FILE]   # default: the built-in vllm file

Re-does measure.py's two fits from the medians stored in the file's `fit` section, each time
without one group, and prints the held-out group's prediction error:

- the way in (`per_request_us` + `per_prompt_token_ns` × prompt tokens): least squares through
  the per-prompt-length medians, leaving out one prompt length at a time;
- the way out's slope (`per_batch_output_us`): a line through the alone median
  (`per_output_token_us` at 1 request in the step), weighted by samples, leaving out one
  requests-per-step group at a time (the alone group itself is the fixed point, not held out).

Standard library only.
"""
import json
import os
import sys

DEFAULT = os.path.join(os.path.dirname(__file__), "../../crates/perf/data/frontend/vllm-0.19-amd-epyc-2c.json")


def line_fit(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def slope_through(a, groups):
    """Weighted least-squares slope of y = a + b·(n − 1) over (n, y, weight) groups."""
    num = sum(w * (n - 1) * (y - a) for n, y, w in groups)
    den = sum(w * (n - 1) ** 2 for n, _, w in groups)
    return num / den if den else 0.0


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    f = json.load(open(path))
    fit = f["fit"]
    print(f"{path}")
    print("way in (completions), leave one prompt length out:")
    pts = sorted((int(k), v) for k, v in fit["request_in"]["completions"]["medians_us_by_prompt_tokens"].items())
    errs = []
    for i, (x, y) in enumerate(pts):
        a, b = line_fit(pts[:i] + pts[i + 1:])
        e = (a + b * x - y) / y * 100
        errs.append(abs(e))
        print(f"  {x:>5} tokens: measured {y:8.1f} µs, predicted {a + b * x:8.1f} µs ({e:+.1f}%)")
    print(f"  mean |error| {sum(errs) / len(errs):.1f}%, worst {max(errs):.1f}%")
    out = fit["token_out"]
    a = out["per_output_token_us"]
    med = {int(k): v for k, v in out["median_us_by_requests_in_step"].items()}
    cnt = {int(k): v for k, v in out["samples_by_requests_in_step"].items()}
    groups = [(n, med[n], cnt.get(n, 1)) for n in sorted(med) if n > 1]
    print("way out, leave one requests-per-step group out (weighted by samples):")
    errs, wsum = [], 0
    for i, (n, y, w) in enumerate(groups):
        b = slope_through(a, groups[:i] + groups[i + 1:])
        p = a + b * (n - 1)
        e = (p - y) / y * 100
        errs.append((abs(e), w))
        wsum += w
        print(f"  {n:>3} in step ({w:>5} samples): measured {y:7.1f} µs, predicted {p:7.1f} µs ({e:+.1f}%)")
    print(f"  sample-weighted mean |error| {sum(e * w for e, w in errs) / wsum:.1f}%, "
          f"worst {max(e for e, _ in errs):.1f}%")


if __name__ == "__main__":
    main()
