# ruff: noqa
# Prints the main metrics of ncu raw CSVs (docs/results/kernels/ncu_v6/ncu.sh), one line per profiled launch
# (every third: the last of each configuration): python3 summary.py FILE.csv ..
import csv, sys
keys = ["gpu__time_duration.sum", "launch__grid_size", "launch__block_size", "launch__registers_per_thread",
        "l1tex__t_sector_hit_rate.pct", "lts__t_sector_hit_rate.pct", "l1tex__data_pipe_lsu_wavefronts.avg.pct_of_peak_sustained_elapsed",
        "l1tex__lsuin_requests.avg.pct_of_peak_sustained_elapsed", "l1tex__throughput.avg.pct_of_peak_sustained_active",
        "lts__t_sectors.avg.pct_of_peak_sustained_elapsed", "smsp__issue_active.avg.per_cycle_active",
        "sm__warps_active.avg.pct_of_peak_sustained_active", "dram__bytes.sum.per_second",
        "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
        "smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio",
        "smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio"]
for f in sys.argv[1:]:
    rows = list(csv.reader(open(f)))
    i = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
    hdr = rows[i]
    for d in rows[i + 2:][2::3]:
        rec = dict(zip(hdr, d))
        print(f, " | ".join(f"{k.split('.')[0].replace('smsp__average_warps_issue_stalled_','stall_')}={rec.get(k,'?')}" for k in keys))
