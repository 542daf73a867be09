# ruff: noqa
# Session 27: what the zero fill of split-K outputs costs as a driver memset node instead of torch.zeros' fill kernel.
# Each layer is timed as the benchmark times it (rotated copies, one CUDA graph, its per-GPU configuration) with the
# kernel modules' `output` replaced: "zeros" as shipped (torch.zeros), "memset" torch.empty plus cuMemsetD8Async on the
# current stream (captured as a memset node), "empty" no fill (wrong sums: the bound, as v15 measured it). Variants
# interleaved, twice. From the repository root:   python3 docs/results/kernels/v17/memset_fill.py OUT.json
import ctypes, dataclasses, json, sys
sys.path.insert(0, "benchmarks")
import torch
from gpu_kernels import Timer, lowbit_formats, kernel_fns
from lowbit.kernels.triton import column_tables, common, uniform
from lowbit.kernels.triton.timing import past_l2

libcuda = ctypes.CDLL("libcuda.so.1")
libcuda.cuMemsetD8Async.argtypes = [ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_size_t, ctypes.c_void_p]
shipped = common.output


def memset_output(m, n, parts, like, zero=True):
    y = shipped(m, n, parts, like, zero=False)
    if parts > 1 and zero:
        rc = libcuda.cuMemsetD8Async(y.data_ptr(), 0, y.numel() * y.element_size(),
                                     ctypes.c_void_p(torch.cuda.current_stream().cuda_stream))
        assert rc == 0, rc
    return y


def empty_output(m, n, parts, like, zero=True):
    return shipped(m, n, parts, like, zero=False)


VARIANTS = {"zeros": shipped, "memset": memset_output, "empty": empty_output}
dev = torch.device("cuda")
timer = Timer(dev, 20)
cases = [("uniform4 g128", 16), ("uniform3 g128", 16), ("uniform2 g128", 16), ("mixed 2/3/4 tables", 1),
         ("table4", 16)]
rows = []
torch.manual_seed(0)
with torch.no_grad():
    formats = lowbit_formats()
    for name, m in cases:
        kind, build = formats[name]
        prep, run, tuning = kernel_fns(kind)
        for n, k in ((4096, 4096), (4096, 11008), (11008, 4096)):
            qw = build(n, k, dev)
            x = torch.randn(m, k, device=dev).half()
            ref = x.float() @ qw.dequantize().T
            st = prep(qw, dev)
            copies = past_l2(st, dev)
            key, _ = tuning(st, common.as_activations(x))
            for rep in range(2):
                for v, fn in VARIANTS.items():
                    uniform.output = column_tables.output = fn
                    y = run(st, x).float()
                    err = float((y - ref).abs().max() / ref.abs().max())
                    cfg = common._BEST.get(common.key_text((*key, torch.cuda.get_device_name(dev))))
                    us = timer([lambda s=s: run(s, x) for s in copies])[0]
                    rows.append(dict(format=name, shape=[n, k], batch=m, variant=v, rep=rep, us=us, rel_err=err,
                                     config=dataclasses.asdict(cfg) if cfg else None))
                    print(name, n, k, m, v, rep, f"{us:.2f}", f"{err:.1e}", cfg, flush=True)
            uniform.output = column_tables.output = shipped
            del copies, st, qw
json.dump(rows, open(sys.argv[1], "w"), indent=1)
