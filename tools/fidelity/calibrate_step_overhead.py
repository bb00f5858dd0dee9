#!/usr/bin/env python3
"""Measures a profile's `step_overhead_us` from a real run's aggregate output throughput.

The per-step overhead is device time that per-operator timings cannot contain (see
crates/perf/src/latency/profile/overheads.rs). This tool finds the one constant for which the
emulated run produces its output tokens at the real run's aggregate rate (total output tokens /
time from the first queued request to the last token: one number for the whole run, no
per-request latency enters), by bisection over `llm-emu validate`. It writes the result, with how
it was obtained, to PROFILE_DIR/overheads.yaml (atomically), or prints it with --dry-run.

  tools/fidelity/calibrate_step_overhead.py --profile-dir DIR --real RUN/vllm \
      --workload RUN/workload.jsonl [--llm-emu target/release/llm-emu] [--dry-run]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def throughput_err(llm_emu, profile_spec_dir, real, workload, overhead_us, extra):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [llm_emu, "validate", "--real", real, "--workload", workload,
               "--latency", f"profile:dir={profile_spec_dir},step_overhead_us={overhead_us:.3f}",
               "--json", out.name, *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"llm-emu validate failed:\n{r.stderr}")
        m = json.load(open(out.name))
    return m["output_throughput_err_pct"], m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile-dir", required=True, help="profile directory (meta.yaml, tp*/)")
    ap.add_argument("--spec-dir", help="dir= value for --latency (default: --profile-dir; "
                    "use builtin:NAME to calibrate the compiled-in copy)")
    ap.add_argument("--real", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--llm-emu", default="target/release/llm-emu")
    ap.add_argument("--max-us", type=float, default=5000.0)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("extra", nargs="*", help="further validate flags (after --)")
    a = ap.parse_args()
    spec_dir = a.spec_dir or a.profile_dir

    lo, hi = 0.0, a.max_us
    e_lo, _ = throughput_err(a.llm_emu, spec_dir, a.real, a.workload, lo, a.extra)
    if e_lo <= 0:
        sys.exit(f"with no overhead the emulated throughput is already {e_lo:+.2f}% of real: "
                 "nothing to add (the profile is slow already or the run is not GPU-bound)")
    e_hi, _ = throughput_err(a.llm_emu, spec_dir, a.real, a.workload, hi, a.extra)
    if e_hi > 0:
        sys.exit(f"even {hi} µs per step leaves throughput {e_hi:+.2f}%: check the profile/run pair")
    while hi - lo > 1.0:
        mid = (lo + hi) / 2
        e, _ = throughput_err(a.llm_emu, spec_dir, a.real, a.workload, mid, a.extra)
        if e > 0:
            lo = mid
        else:
            hi = mid
    us = round((lo + hi) / 2)
    e, m = throughput_err(a.llm_emu, spec_dir, a.real, a.workload, us, a.extra)
    print(f"step_overhead_us = {us} (output throughput {m['output_throughput_sim']:.1f} vs real "
          f"{m['output_throughput_real']:.1f} tok/s, {e:+.3f}%)")
    if a.dry_run:
        return
    ident = {}
    with open(os.path.join(a.profile_dir, "meta.yaml")) as f:
        for line in f:
            if line[:1].isspace() or ":" not in line:
                continue
            k, v = line.split(":", 1)
            if k in ("hardware", "model", "vllm_version", "profiled_at"):
                ident[k] = v.strip().strip("'\"")
    text = (
        "# Device time per engine step outside the profiled operators (input copies, sampled-id\n"
        "# hand-off, operator-boundary gaps of a whole forward); see docs/fidelity.md.\n"
        f"step_overhead_us: {us}\n"
        "obtained_by: \"tools/fidelity/calibrate_step_overhead.py: the constant for which "
        "llm-emu's output-token throughput equals the real run's aggregate throughput "
        f"({m['output_throughput_real']:.1f} tok/s); no per-request latency used\"\n"
        f"real_run: \"{os.path.basename(os.path.dirname(os.path.abspath(a.real)))}\"\n"
        "# The profile this calibration belongs to (its meta.yaml), for copies without this file:\n"
        + "".join(f"profile_{k}: \"{v}\"\n" for k, v in ident.items())
    )
    path = os.path.join(a.profile_dir, "overheads.yaml")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
