#!/usr/bin/env python3
"""compare_logits.py — max absolute difference of two float32 logit files (exit 1 if over a bound)."""
import array
import sys

got = array.array("f", open(sys.argv[1], "rb").read())
want = array.array("f", open(sys.argv[2], "rb").read())
bound = float(sys.argv[3])
if len(got) != len(want):
    sys.exit(f"size mismatch: {len(got)} vs {len(want)} floats")
worst = max(abs(a - b) for a, b in zip(got, want))
print(f"max |difference| = {worst:.3g} over {len(got)} logits (bound {bound})")
sys.exit(0 if worst <= bound else 1)
