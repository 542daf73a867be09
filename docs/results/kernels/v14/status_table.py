# ruff: noqa
# The status table of docs/results.md, v14: every format's batch-1 and batch-16 times from two runs of the benchmark
# (default gpu_kernels_h100_v14_final_a.json and _final_b.json; gpu_kernels_h100_v14_all_a.json and _all_b.json are
# the earlier pair, at 840c077's kernels), batch 16 over batch 1, and mixed widths against the byte-weighted mix of
# the single-width tables of the same run.  python3 docs/results/kernels/v14/status_table.py [A.json B.json]
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
rows = []
for f in sys.argv[1:] or ("gpu_kernels_h100_v14_final_a.json", "gpu_kernels_h100_v14_final_b.json"):
    rows += [r for r in json.load(open(os.path.join(here, f)))["layer"] if "us" in r]  # first run of each baseline kept
shapes = [(4096, 4096), (4096, 11008), (11008, 4096)]
us, mix = {}, {}
for r in rows:
    us.setdefault((r["format"], tuple(r["shape"]), r["batch"]), r["us"])
    if "ratio_to_single" in r:
        mix[(tuple(r["shape"]), r["batch"])] = r["ratio_to_single"]
formats = list(dict.fromkeys(r["format"] for r in rows))
print("| format | 4096² b1 | b16 | b16/b1 | 4096x11008 b1 | b16 | b16/b1 | 11008x4096 b1 | b16 | b16/b1 |")
print("|---|---|---|---|---|---|---|---|---|---|")
for f in formats:
    cells = []
    for s in shapes:
        a, b = us.get((f, s, 1)), us.get((f, s, 16))
        cells += [f"{a:.2f}" if a else "—", f"{b:.2f}" if b else "—", f"{b / a:.2f}" if a and b else "—"]
    print(f"| {f} | " + " | ".join(cells) + " |")
print()
print("mixed / byte-weighted single-width mix:", {f"{s[0]}x{s[1]} b{m}": round(v, 2) for (s, m), v in mix.items()})
