# ruff: noqa
# The current-status table of docs/results.md (v12): every format at batch 1 and 16 from the two runs of one session
# at one commit (gpu_kernels_h100_v12_all_a.json: uniform, binary, AQLM with the aqlm package's kernels;
# _all_b.json: per-column tables), per-GPU file configurations. From the repository root:
#   python3 docs/results/kernels/ab_v12/status_table.py
import json
D = "docs/results/kernels/"
rows = {}
for f in ("gpu_kernels_h100_v12_all_a.json", "gpu_kernels_h100_v12_all_b.json"):
    for r in json.load(open(D + f))["layer"]:
        if "us" in r:
            rows.setdefault((r["format"], tuple(r["shape"]), r["batch"]), r["us"])
SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]
TARGET = {"uniform4 g128": "7.0 / 12.5", "uniform2 g128": "5.5 / 8.5", "table4": "8 / 14", "aqlm 2x8": "7 / 12",
          "aqlm 1x16": "16 / 35", "uniform4 g128 +0.5% outliers": "+15%", "mixed 2/3/4 tables": "1.1x the mix"}
names = []
for (f, _, _) in rows:
    if f not in names:
        names.append(f)
print("| format | " + " | ".join(f"{n}x{k} b1 | b16 | b16/b1" for n, k in SHAPES) + " | target b1 (4096² / 4096x11008) |")
print("|---|" + "---|---|---|" * 3 + "---|")
for f in names:
    cells = []
    for s in SHAPES:
        a, b = rows.get((f, s, 1)), rows.get((f, s, 16))
        cells += [f"{a:.2f}" if a else "", f"{b:.2f}" if b else "", f"{b / a:.2f}" if a and b else ""]
    print(f"| {f} | " + " | ".join(cells) + f" | {TARGET.get(f, '')} |")
