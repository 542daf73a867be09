# ruff: noqa
# The main metrics of ncu raw CSVs (docs/results/kernels/ncu_v9/ncu.sh), for the last of each 3 launches, and
# every stall reason above 0.2 cycles per issued instruction: python3 summary.py FILE.csv ..
import csv, sys
keys = ["gpu__time_duration.sum", "launch__grid_size", "launch__block_size", "launch__registers_per_thread",
        "sm__warps_active.avg.pct_of_peak_sustained_active", "smsp__issue_active.avg.per_cycle_active",
        "l1tex__t_sector_hit_rate.pct", "l1tex__data_pipe_lsu_wavefronts.avg.pct_of_peak_sustained_elapsed",
        "l1tex__lsuin_requests.avg.pct_of_peak_sustained_elapsed", "l1tex__throughput.avg.pct_of_peak_sustained_active",
        "lts__t_sectors.avg.pct_of_peak_sustained_elapsed", "dram__bytes.sum.per_second",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed"]
for f in sys.argv[1:]:
    rows = list(csv.reader(open(f)))
    i = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
    hdr = rows[i]
    for d in rows[i + 2:][2::3]:
        rec = dict(zip(hdr, d))
        print(f.split("/")[-1], " | ".join(f"{k.split('.')[0]}={rec.get(k, '?')}" for k in keys))
        st = {k.replace("smsp__average_warps_issue_stalled_", "").split("_per_issue")[0]: rec[k] for k in hdr
              if k.startswith("smsp__average_warps_issue_stalled_") and k.endswith("per_issue_active.ratio")}
        print("   stalls:", ", ".join(f"{k} {v}" for k, v in st.items() if v.replace(".", "").replace(",", "").isdigit() and float(v.replace(",", "")) > 0.2))
