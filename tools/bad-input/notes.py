"""Why llm-emu answers a bad-input case differently from vLLM 0.19: (case-name prefix, reason).
The first matching prefix wins; docs/serve.md lists the same decisions."""

NOTES = []


def why(name):
    for prefix, reason in NOTES:
        if name.startswith(prefix):
            return reason
    return None
