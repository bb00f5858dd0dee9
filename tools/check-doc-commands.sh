#!/usr/bin/env bash
# Runs the shell commands of README.md and docs/*.md as a reader would: every command in a
# fenced ```sh (or ```bash) block, in order, block by block, in a scratch directory beside the
# repository (so that `../shared/...` and `tools/...` resolve as they do from the repository
# root), with `llm-emu` on the PATH. Prints one line per command (PASS, FAIL or SKIP with the
# reason) and exits non-zero if any command failed.
#
# Usage: tools/check-doc-commands.sh [FILE.md ...]     (default: README.md docs/*.md)
#   LLM_EMU=path/to/llm-emu   the binary (default: target/debug/llm-emu, built if absent)
#   DOC_CMD_TIMEOUT=S         the longest one command may run (default 300 s: the slowest, a
#                             bisecting sweep, takes 50 s of CPU in a debug build)
#
# What is run differs from the text in these ways only, each to keep a run short and local:
# - `cargo run --release -p llm-emu --` is the `llm-emu` binary given (a debug build by default);
# - `simulate` without `--workload` or `--synthetic` runs `--synthetic 50`, and `bench`'s
#   `--num-prompts N` is 20 (added when absent; a workload replay sends its first 20 lines);
# - the port a server listens on (8000 by default, or the one a block's URLs name) is a free
#   port chosen here, and URLs are rewritten to it; a block that sends requests (curl, bench)
#   without starting a server gets one (`llm-emu serve` with its defaults);
# - `llm-emu serve` runs in the background until the end of its block (it is checked to print
#   its `listening on` line); `curl` gets `--fail --max-time 30` (an HTTP error fails it);
# - `llm-emu report ... --png DIR` writes its screenshot into the scratch directory's `png-out`
#   instead of DIR, so that a check never overwrites the screenshots committed under docs/.
# A command that only sets a variable (`R=../shared/...`) holds for the rest of its file, as in a
# reader's shell; each command runs in a shell of its own, so a multi-line here-document cannot
# be checked (write the file with `printf` instead).
# Commands that need what a check cannot have here are skipped with the reason: a GPU or vLLM,
# a network download, minutes or hours of run time (the list is SKIPS below, matched in order).
# A command with a placeholder in capitals (MODEL, PATH, ...) that is not listed fails: write
# it so that it runs, or list it here with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

SKIPS=(
    '^cargo test --workspace|the whole test suite (minutes; CI runs it)'
    '^PROPTEST_CASES=1000000|a million fuzz cases per target (hours)'
    'tools/fidelity/report.sh|every validation case and plots (minutes)'
    'fetch-llmservingsim-runs.sh|downloads the public real runs from GitHub (network)'
    'fetch-operator-data.sh|downloads the public operator tables from GitHub (network)'
    '/data/ops/|needs the operator tables tools/fetch-operator-data.sh downloads (network)'
    'tools/fidelity/table.py PROFILE.json|needs the validate outputs of a real run that tools/fidelity/report.sh writes'
    '--real RUN/vllm|needs a public real run other than the one in the repository (tools/fidelity/fetch-llmservingsim-runs.sh, network)'
    '^llm-emu simulate --synthetic 20000 |20,000 requests (minutes in a debug build, whose scheduler checks its invariants every step)'
    'conversation_trace.first1000.jsonl|1,000 Mooncake requests of 13.7 M prompt tokens (0.4 s in a release build, over 10 minutes in a debug build, whose block pool checks its invariants after every operation; crates/cli/tests/mooncake_cli.rs runs a part of it)'
    '/data/ip-runs|needs the inference-sim runs (tools/fidelity/fetch-inference-sim-runs.sh: network) and minutes per load stage'
    'inference-perf-table.py [a-z0-9-]+[.]json|needs the output of the validate run above it'
    '^llm-emu sweep --grid grid.yaml --output-dir out --slo-ttft-ms p99:500|72 points of 10,000 requests each over the grid.yaml shown below it (a minute in a release build)'
    '^pip install|installs into vLLM'"'"'s Python environment (network)'
    'vllm serve|needs vLLM on a GPU'
    'profile-pack steps.jsonl|needs engine steps captured from vLLM on a GPU'
    '--model MODEL|needs vLLM serving MODEL (the capture workflow, on a GPU)'
    'ShareGPT_V3_unfiltered_cleaned_split.json|needs the ShareGPT download (network, 640 MB)'
    'vllm-result.json|needs a result of `vllm bench serve` (a GPU)'
    '^docker |needs a Docker daemon (docs/deploy.md)'
    '^kind |needs kind and a Docker daemon (docs/deploy.md)'
    '^kubectl |needs a Kubernetes cluster (docs/deploy.md)'
    '^helm |needs the helm CLI and a Kubernetes cluster (docs/deploy.md)'
    '^vllm-router |needs production-stack'"'"'s router in a Kubernetes cluster (docs/deploy.md)'
)

LLM_EMU=${LLM_EMU:-$REPO/target/debug/llm-emu}
if [ ! -x "$LLM_EMU" ]; then
    cargo build -p llm-emu || exit 1
fi
LLM_EMU=$(cd "$(dirname "$LLM_EMU")" && pwd)/$(basename "$LLM_EMU")
TIMEOUT=${DOC_CMD_TIMEOUT:-300}
FILES=("$@")
[ ${#FILES[@]} -gt 0 ] || FILES=(README.md docs/*.md)

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/llm-emu-doc-commands.XXXXXX")
WORK=$SCRATCH/repo
mkdir -p "$WORK" "$SCRATCH/bin"
ln -s "$LLM_EMU" "$SCRATCH/bin/llm-emu"
for d in tools plugins crates docs; do ln -s "$REPO/$d" "$WORK/$d"; done
[ -e "$REPO/../shared" ] && ln -s "$(cd "$REPO/../shared" && pwd)" "$SCRATCH/shared"
export PATH="$SCRATCH/bin:$PATH"

SERVERS=()
stop_servers() {
    for pid in "${SERVERS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    SERVERS=()
}
trap 'stop_servers; rm -rf "$SCRATCH"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The commands of FILE, one per line as `LINE<TAB>BLOCK<TAB>COMMAND`: backslash continuations
# joined, comment lines and trailing comments dropped.
commands_of() {
    awk '
        /^```/ {
            if (inblock) { inblock = 0; next }
            lang = substr($0, 4); sub(/[ \t].*/, "", lang)
            if (lang == "sh" || lang == "bash") { inblock = 1; block++ }
            next
        }
        !inblock { next }
        {
            line = $0
            if (cmd == "") start = NR
            if (line ~ /\\$/) { sub(/\\$/, "", line); cmd = cmd line " "; next }
            cmd = cmd line
            sub(/[ \t]+#[^'"'"'"]*$/, "", cmd)
            gsub(/^[ \t]+|[ \t]+$/, "", cmd)
            gsub(/[ \t]+/, " ", cmd)
            if (cmd != "" && cmd !~ /^#/) print start "\t" block "\t" cmd
            cmd = ""
        }
    ' "$1"
}

skip_reason() {
    local c=$1 entry
    for entry in "${SKIPS[@]}"; do
        if [[ "$c" =~ ${entry%%|*} ]]; then
            echo "${entry#*|}"
            return
        fi
    done
    if { [[ "$c" == *../shared/* ]] || [ "$2" = 1 ]; } && [ ! -e "$SCRATCH/shared" ]; then
        echo "needs ../shared (the real-run data), absent here"
    fi
}

# The command as run here (see the header).
rewrite() {
    local c=$1 port=$2
    c=${c//cargo run --release -p llm-emu --/llm-emu}
    c=$(sed -E "s#(localhost|127\.0\.0\.1|0\.0\.0\.0):[0-9]+#127.0.0.1:$port#g" <<<"$c")
    if [[ "$c" =~ ^llm-emu\ simulate ]] && [[ "$c" != *--workload* ]] && [[ "$c" != *--synthetic* ]]; then
        c="$c --synthetic 50"
    fi
    if [[ "$c" =~ ^llm-emu\ bench ]]; then
        if [[ "$c" == *--num-prompts* ]]; then
            c=$(sed -E 's/--num-prompts [0-9]+/--num-prompts 20/' <<<"$c")
        else
            c="$c --num-prompts 20"
        fi
        [[ "$c" == *--base-url* || "$c" == *--port* ]] || c="$c --port $port"
    fi
    if [[ "$c" =~ ^llm-emu\ serve ]] && [[ "$c" != *--port* ]]; then
        c="$c --host 127.0.0.1 --port $port"
    fi
    [[ "$c" =~ ^curl ]] && c="curl --fail --max-time 30 ${c#curl }"
    if [[ "$c" =~ ^llm-emu\ report ]]; then
        c=$(sed -E 's#--png[ =][^ ]+#--png png-out#' <<<"$c")
    fi
    echo "$c"
}

# Starts `llm-emu serve ...` in the background; succeeds once it prints its address.
start_server() {
    local c=$1 log=$2 i
    (cd "$WORK" && exec bash -c "exec $c") >"$log.out" 2>"$log.err" &
    SERVERS+=($!)
    for i in $(seq 1 300); do
        grep -q "listening on" "$log.out" 2>/dev/null && return 0
        kill -0 "$!" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

pass=0 fail=0 skip=0
FAILED=()
for f in "${FILES[@]}"; do
    [ -f "$f" ] || continue
    vars=""          # the file's variable assignments so far, run before each of its commands
    shared_vars=()   # the names of those that hold a ../shared path
    current_block=""
    block_has_server=0
    while IFS=$'\t' read -r line block cmd; do
        if [ "$block" != "$current_block" ]; then
            stop_servers
            current_block=$block
            port=$(free_port)
            # Does this block start its own server?
            if commands_of "$f" | awk -F'\t' -v b="$block" '$2 == b { print $3 }' |
                grep -qE '^(llm-emu serve|cargo run --release -p llm-emu -- serve)'; then
                block_has_server=1
            else
                block_has_server=0
            fi
            needs_server=0
        fi
        where="$f:$line"
        uses_shared=0
        for v in "${shared_vars[@]}"; do
            [[ "$cmd" == *"\$$v"* || "$cmd" == *"\${$v}"* ]] && uses_shared=1
        done
        assignment=0
        if [[ "$cmd" =~ ^([A-Za-z_][A-Za-z0-9_]*)=[^\ ]*$ ]]; then
            assignment=1
            [[ "$cmd" == *../shared/* ]] && shared_vars+=("${BASH_REMATCH[1]}")
        fi
        reason=$(skip_reason "$cmd" "$uses_shared")
        if [ -n "$reason" ]; then
            printf 'SKIP  %-22s %s\n      (%s)\n' "$where" "$cmd" "$reason"
            skip=$((skip + 1))
            continue
        fi
        run=$(rewrite "$cmd" "$port")
        [ "$assignment" = 1 ] && vars="$vars$cmd; "
        if [[ "$run" =~ ^(curl|llm-emu\ bench) ]] && [ "$block_has_server" = 0 ] && [ ${#SERVERS[@]} -eq 0 ]; then
            start_server "llm-emu serve --host 127.0.0.1 --port $port" "$SCRATCH/server-$line" || {
                printf 'FAIL  %-22s %s\n      (the server this block needs did not start)\n' "$where" "$cmd"
                fail=$((fail + 1)); FAILED+=("$where"); continue
            }
        fi
        log="$SCRATCH/cmd-$(basename "$f")-$line"
        t0=$(date +%s.%N)
        if [[ "$run" =~ ^llm-emu\ serve ]]; then
            start_server "$run" "$log"
            rc=$?
        else
            (cd "$WORK" && timeout "$TIMEOUT" bash -c "$vars$run") >"$log.out" 2>"$log.err" </dev/null
            rc=$?
        fi
        secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        if [ "$rc" = 0 ]; then
            printf 'PASS  %-22s %s  (%ss)\n' "$where" "$cmd" "$secs"
            pass=$((pass + 1))
        else
            printf 'FAIL  %-22s %s  (exit %s)\n      run as: %s\n' "$where" "$cmd" "$rc" "$run"
            tail -n 5 "$log.err" "$log.out" 2>/dev/null | sed 's/^/      | /'
            fail=$((fail + 1))
            FAILED+=("$where")
        fi
    done < <(commands_of "$f")
    stop_servers
done
echo "doc commands: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ] || { echo "failed: ${FAILED[*]}"; exit 1; }
