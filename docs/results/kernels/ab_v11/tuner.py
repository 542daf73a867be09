# ruff: noqa
# The tuner for shapes not in the per-GPU file (session 21): for each format and shape, the candidates chosen
# (a) by the graph-timed tuner (common.choose since session 21: timing.time_configs over copies past L2, 5 replays),
# (b) by triton.testing.do_bench as common.choose did until session 21 (one call after an L2 flush, warmup 5,
# rep 20), twice, and (c) the sweep's choice in the per-GPU file; each chosen configuration then timed as the
# benchmark times rows (20 replays). From the repository root, on the GPU:
#   python3 docs/results/kernels/ab_v11/tuner.py OUT.json   (TUNER_ONLY: format names, comma-separated substrings)
import dataclasses, json, os, sys, time
sys.path.insert(0, "benchmarks")
import torch
from triton.testing import do_bench
from gpu_kernels import kernel_fns, lowbit_formats
from lowbit.kernels.triton import common
from lowbit.kernels.triton.timing import past_l2, time_configs, graph_us
dev = torch.device("cuda")
gpu = torch.cuda.get_device_name(dev)
filed = common.load_tuned(gpu)
only = os.environ.get("TUNER_ONLY", "uniform4 g128,uniform2 g128,table4,mixed").split(",")
rows = []
torch.manual_seed(0)
with torch.no_grad():
    for name, (kind, build) in lowbit_formats().items():
        if not any(o in name for o in only):
            continue
        prepare, run, tuning = kernel_fns(kind)
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            st = prepare(qw, dev)
            x = torch.randn(1, k, device=dev).half()
            key, configs = tuning(st, common.as_activations(x))
            swept = filed.get(common.key_text((*key, gpu)))
            for c in configs:  # compile every candidate first, so neither tuner's wall time includes it
                run(st, x, c)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            states = past_l2(st, dev)
            g = time_configs(configs, lambda s, c: run(s, x, c), states, replays=5)
            t_graph = time.perf_counter() - t0
            by_graph = configs[min(range(len(configs)), key=g.__getitem__)]
            by_bench = []
            for rep in range(2):
                t0 = time.perf_counter()
                b = [do_bench(lambda c=c: run(st, x, c), warmup=5, rep=20) for c in configs]
                by_bench.append((configs[min(range(len(configs)), key=b.__getitem__)], time.perf_counter() - t0))
            chosen = {"graph tuner": by_graph, "do_bench 1": by_bench[0][0], "do_bench 2": by_bench[1][0]}
            if swept is not None:
                chosen["sweep (per-GPU file)"] = swept
            us = {w: graph_us([lambda s=s, c=c: run(s, x, c) for s in states], 20) for w, c in chosen.items()}
            row = dict(format=name, shape=[n, k], batch=1, candidates=len(configs),
                       config={w: dataclasses.asdict(c) for w, c in chosen.items()}, us=us,
                       tuning_s={"graph tuner": t_graph, "do_bench 1": by_bench[0][1], "do_bench 2": by_bench[1][1]})
            rows.append(row)
            print(name, n, k, " | ".join(f"{w}: {u:.2f} us {dataclasses.astuple(chosen[w])}" for w, u in us.items()),
                  f"| tuning s graph {t_graph:.1f} do_bench {by_bench[0][1]:.1f}", flush=True)
            del states, st, qw
            torch.cuda.empty_cache()
            json.dump(rows, open(sys.argv[1], "w"), indent=1)
