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
    q = torch.randint(0, 2**bits, (k,), generator=g).double()
    s = (torch.rand(k // 128, generator=g) * 0.01 + 0.005).half().double().repeat_interleave(128)
    z = torch.randint(0, 2**bits, (k // 128,), generator=g).double().repeat_interleave(128)
    x = torch.randn(k, generator=g).half().double()
    return q, s, z, x


def fixed_point(q, s, z, x, npart):
    top = 2 ** (8 * npart - 1) - 1
    xb = x.reshape(-1, 128)
    sx = (xb.abs().amax(1).float() / top).double()  # fp32 scale, as the prep kernel
    xi = torch.round(xb / sx[:, None]).clamp(-top, top)
    dot = (q.reshape(-1, 128) * xi).sum(1)  # exact integers (int32 in the kernel)
    sb = s.reshape(-1, 128)[:, 0].float()
    b = (-z.reshape(-1, 128)[:, 0] * sb.double()).half().float()  # fp16 offsets, as stored
    y = (dot.float() * (sb * sx.float()) + b * xb.sum(1).float()).sum()
    return float(y.half())


def fp32_gemv(q, s, z, x):
    sb = s.reshape(-1, 128)[:, 0].float()
    b = (-z.reshape(-1, 128)[:, 0] * sb.double()).half().float()
    xb = x.reshape(-1, 128).float()
    y = (sb * (q.reshape(-1, 128).float() * xb).sum(1) + b * xb.sum(1)).sum()
    return float(y.half())


def ref(q, s, z, x):
    sb = s.reshape(-1, 128)[:, 0]
    b = (-z.reshape(-1, 128)[:, 0] * sb).half().double()
    return float((sb * (q.reshape(-1, 128) * x.reshape(-1, 128)).sum(1) + b * x.reshape(-1, 128).sum(1)).sum())


def main():
    g = torch.Generator().manual_seed(0)
    print("| bits | K | layers | arithmetic | worst error | layers over 4e-3 |\n|---|---|---|---|---|---|")
    for bits in (2, 4):
        for k in (128, 512):
            errs = {"fp32 (shipped)": [], "dp4a, 2 bytes": [], "dp4a, 3 bytes": []}
            n = 3000
            for _ in range(n):
                q, s, z, x = layer(g, k, bits)
                r = ref(q, s, z, x)
                d = max(abs(r), 1e-30)
                errs["fp32 (shipped)"].append(abs(fp32_gemv(q, s, z, x) - r) / d)
                errs["dp4a, 2 bytes"].append(abs(fixed_point(q, s, z, x, 2) - r) / d)
                errs["dp4a, 3 bytes"].append(abs(fixed_point(q, s, z, x, 3) - r) / d)
            for name, e in errs.items():
                print(f"| {bits} | {k} | {n} | {name} | {max(e):.1e} | {sum(v > CHECK for v in e)} |")


if __name__ == "__main__":
    main()
