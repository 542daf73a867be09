# ruff: noqa
# Session 25, CPU only: the dp4a prototype's arithmetic (dp4a_gemv.py: per-block fixed-point activations in NPART
# bytes, exact integer dot products, then fp32 scaling and sums, fp16 output) against an fp32 GEMV (the shipped
# kernel's arithmetic: exact products, fp32 sums), emulated in torch on random one-output layers, the case where the
# kernel tests' check (max |y - ref| / max |ref| < 4e-3, fp64 reference) is hardest: a single output that may nearly
# cancel. Weights as lowbit.kernels.triton.random_weights.random_uniform draws them (scales in [0.005, 0.015),
# integer zeros), activations N(0, 1) in fp16 as the tests' xs().
#   python3 docs/results/kernels/v15/dp4a_precision.py
import torch

CHECK = 4e-3


def layer(g, k, bits):
    """Codes ``(K / 128, 128)``, the fp16 scales and offsets ``b = -z s`` of each block of 128 inputs, activations."""
    q = torch.randint(0, 2**bits, (k // 128, 128), generator=g).double()
    s = (torch.rand(k // 128, generator=g) * 0.01 + 0.005).half().double()
    z = torch.randint(0, 2**bits, (k // 128,), generator=g).double()
    x = torch.randn(k, generator=g).half().double().reshape(-1, 128)
    return q, s, (-z * s).half().double(), x


def fixed_point(q, s, b, x, npart):
    top = 2 ** (8 * npart - 1) - 1
    sx = (x.abs().amax(1).float() / top).double()  # fp32 scale, as the prep kernel
    xi = torch.round(x / sx[:, None]).clamp(-top, top)
    dot = (q * xi).sum(1)  # exact integers (int32 in the kernel)
    y = (dot.float() * (s.float() * sx.float()) + b.float() * x.sum(1).float()).sum()
    return float(y.half())


def fp32_gemv(q, s, b, x):
    xf = x.float()
    y = (s.float() * (q.float() * xf).sum(1) + b.float() * xf.sum(1)).sum()
    return float(y.half())


def ref(q, s, b, x):
    return float((s * (q * x).sum(1) + b * x.sum(1)).sum())


def main():
    g = torch.Generator().manual_seed(0)
    print("| bits | K | layers | arithmetic | worst error | layers over 4e-3 |\n|---|---|---|---|---|---|")
    for bits in (2, 4):
        for k in (128, 512):
            errs = {"fp32 (shipped)": [], "dp4a, 2 bytes": [], "dp4a, 3 bytes": []}
            n = 3000
            for _ in range(n):
                q, s, b, x = layer(g, k, bits)
                r = ref(q, s, b, x)
                d = max(abs(r), 1e-30)
                errs["fp32 (shipped)"].append(abs(fp32_gemv(q, s, b, x) - r) / d)
                errs["dp4a, 2 bytes"].append(abs(fixed_point(q, s, b, x, 2) - r) / d)
                errs["dp4a, 3 bytes"].append(abs(fixed_point(q, s, b, x, 3) - r) / d)
            for name, e in errs.items():
                print(f"| {bits} | {k} | {n} | {name} | {max(e):.1e} | {sum(v > CHECK for v in e)} |")


if __name__ == "__main__":
    main()
