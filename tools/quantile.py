"""The one percentile rule of the Python tools (measure-frontend/, vllm-reference-compare/,
bench-client.sh): numpy's default, as vLLM's benchmark summary computes it."""


def q(xs, p):
    """The `p`-th percentile (0–100) of `xs`, linearly interpolated between the two nearest
    ranks (numpy's default); NaN for no values."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)
