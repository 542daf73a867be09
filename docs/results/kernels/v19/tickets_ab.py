# ruff: noqa
# Session 29 (v19): for each benchmark key whose per-GPU configuration has several programs adding into each
# output (split K, mixed-width segments, outlier programs), that configuration against the same with tickets
# (Config.tickets: no zero fill; common.store_y), timed as the tuner times (rotated copies past L2, one CUDA
# graph, timing.time_configs), interleaved, twice; the faster of each pair goes into the per-GPU file given
# (as a sweep's choice would), and every ticketed run's output is checked against the torch reference after
# its graphs ran. From the repository root, on the GPU:
#   TK_ONLY="uniform,binary" TK_BATCHES=16 python3 docs/results/kernels/v19/tickets_ab.py OUT.json TUNED.json
import dataclasses, json, os, sys
sys.path.insert(0, "benchmarks")
import torch
import gpu_kernels as gk
from lowbit.kernels.triton import additive, column_tables, common, uniform
from lowbit.kernels.triton.timing import time_configs

dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
l2 = torch.cuda.get_device_properties(dev).L2_cache_size
only = os.environ.get("TK_ONLY", "").split(",")
batches = [int(b) for b in os.environ.get("TK_BATCHES", "1,16").split(",")]


def parts(kind, st, c, m):
    """Programs adding into each output of a launch at ``c`` (0 where tickets cannot apply)."""
    bm = common.block_m(m)
    if kind in ("uniform", "binary"):
        return c.split_k + uniform.outlier_programs(st, c, bm)
    if kind == "table":
        return len(st.segments) * c.split_k
    return 0 if additive.uses_lut(st, m, c) else c.split_k  # a table's launch zeroes y at no cost


rows = []
torch.manual_seed(0)
with torch.no_grad():
    for name, (kind, build) in gk.lowbit_formats().items():
        if only != [""] and not any(o in name for o in only):
            continue
        prepare, run, tuning = gk.kernel_fns(kind)
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            st = prepare(qw, dev)
            ref_w = qw.dequantize().T
            for m in batches:
                x = torch.randn(m, k, device=dev).half()
                run(st, x)  # the per-GPU file's configuration (or tuned)
                key, _ = tuning(st, common.as_activations(x))
                kt = common.key_text((*key, gpu))
                c = common._BEST[kt]
                if c.tickets or parts(kind, st, c, m) < 2:
                    continue
                ct = dataclasses.replace(c, tickets=True)
                states = [st] + [gk.map_tensors(st, torch.clone) for _ in range(gk.n_copies(gk.state_bytes(st), l2) - 1)]
                us = time_configs([c, ct, c, ct], lambda s, cc: run(s, x, cc), states, 20)
                ref = x.float() @ ref_w
                errs = [float((run(s, x, ct).float() - ref).abs().max() / ref.abs().max()) for s in states[:2]]
                fill, tick = min(us[0], us[2]), min(us[1], us[3])
                best = ct if tick < fill else c
                gk.SWEPT[kt] = best
                common._BEST[kt] = best
                rows.append(dict(format=name, shape=[n, k], batch=m, config=dataclasses.asdict(c), fill_us=us[0::2],
                                 tickets_us=us[1::2], tickets_rel_err=errs, chosen_tickets=best.tickets))
                print(f"{name:30s} {n}x{k} b{m} fill {fill:6.2f} tickets {tick:6.2f} ({tick / fill:.3f}) "
                      f"err {max(errs):.1e} {'T' if best.tickets else ''}", flush=True)
                del states
            del st, qw
json.dump(rows, open(sys.argv[1], "w"), indent=1)
if len(sys.argv) > 2:
    gk.write_tuned(sys.argv[2])
