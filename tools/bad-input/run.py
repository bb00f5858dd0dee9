#!/usr/bin/env python3
"""Runs the bad-input matrix (cases.py) against a server and compares each answer's status and
error type with a column of cases.json; prints the agreement between the `vllm` and `llm_emu`
columns too.

The server must serve the model name `matrix-model` with API key `sk-matrix` and
max_model_len 40960:

  # the vLLM 0.19 reference (../../../shared/tools/vllm-reference)
  MODEL_NAME=matrix-model run_ref.sh --api-key sk-matrix          # prints "port N"
  python3 run.py --base-url http://127.0.0.1:N --column vllm
  # llm-emu
  llm-emu serve matrix-model --api-key sk-matrix --max-model-len 40960 --port 8200
  python3 run.py --base-url http://127.0.0.1:8200 --column llm_emu

--update writes what the server answered into that column of cases.json (rows follow
cases.py; NOTES gives the `why` of each intended difference). `cargo test -p llm-emu-serve
--test bad_input` checks the `llm_emu` column against llm-emu in-process.
Exit status 1 when any answer differs from the column.
"""
import argparse
import http.client
import json
import os
import sys
import urllib.parse

from cases import API_KEY, CASES, kind
from notes import why

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "cases.json")


def encode_body(body):
    if body is None:
        return None
    if isinstance(body, bytes):
        return {"hex": body.hex()}
    if isinstance(body, str):
        return {"text": body}
    return {"json": body}


def body_bytes(enc):
    if enc is None:
        return None
    if "hex" in enc:
        return bytes.fromhex(enc["hex"])
    if "text" in enc:
        return enc["text"].encode()
    return json.dumps(enc["json"]).encode()


def send(base, method, path, headers, enc):
    u = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    hdrs = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
    hdrs.update(headers)
    data = body_bytes(enc)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in hdrs.items():
        if v is not None:
            conn.putheader(k, v)
    if data is not None:
        conn.putheader("content-length", str(len(data)))
    conn.putheader("connection", "close")
    conn.endheaders(data)
    try:
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    except (http.client.HTTPException, ConnectionError) as e:
        return {"status": 0, "type": f"no answer: {type(e).__name__}"}
    finally:
        conn.close()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return {"status": status, "type": kind(status, parsed)}


def agreement(rows):
    both = [r for r in rows if r.get("vllm") and r.get("llm_emu")]
    st = sum(r["vllm"]["status"] == r["llm_emu"]["status"] for r in both)
    full = sum(r["vllm"] == r["llm_emu"] for r in both)
    return len(both), st, full


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--column", choices=["vllm", "llm_emu"], required=True)
    ap.add_argument("--update", action="store_true")
    a = ap.parse_args()
    old = {}
    if os.path.exists(TABLE):
        old = {r["name"]: r for r in json.load(open(TABLE))}
    rows, bad = [], 0
    for name, method, path, headers, body in CASES:
        enc = encode_body(body)
        got = send(a.base_url, method, path, headers, enc)
        row = {"name": name, "method": method, "path": path, "headers": headers, "body": enc}
        for col in ("vllm", "llm_emu"):
            if col in old.get(name, {}):
                row[col] = old[name][col]
        want = row.get(a.column)
        if want != got:
            bad += 1
            print(f"DIFF {name}: {a.column} column {want}, server {got}")
        if a.update:
            row[a.column] = got
        rows.append(row)
    for row in rows:
        if row.get("vllm") and row.get("llm_emu") and row["vllm"] != row["llm_emu"]:
            row["why"] = why(row["name"]) or "UNEXPLAINED"
    n, st, full = agreement(rows)
    print(f"{len(rows)} cases; {bad} differ from the {a.column} column")
    print(f"vllm vs llm_emu columns: status agrees in {st}/{n}, status and type in {full}/{n}")
    unexplained = [r["name"] for r in rows if r.get("why") == "UNEXPLAINED"]
    if unexplained:
        print(f"{len(unexplained)} differences without a note: {unexplained}")
    if a.update:
        tmp = TABLE + ".tmp"
        with open(tmp, "w") as f:
            # One row a line: diffs stay readable although a few bodies are long.
            f.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n")
        os.replace(tmp, TABLE)
    sys.exit(1 if bad and not a.update else 0)


if __name__ == "__main__":
    main()
