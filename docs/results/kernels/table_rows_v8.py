# ruff: noqa
# Prototype (session 18): per-column lookup tables at batch 1 with the codes packed along the OUTPUT rows
# (one 32-bit word = 32/b rows of one input column) and each column's table held in registers as byte
# planes, looked up with PRMT (four codes per PRMT), instead of the shipped kernel's 2-byte gather per code.
# Timed against the shipped table kernel (tuned configuration) and fp16 torch.matmul in one run, the way
# benchmarks/gpu_kernels.py times layers (rotated weight copies, one CUDA graph).
#   python3 docs/results/kernels/table_rows_v8.py OUT.json   (repository root, packages on PYTHONPATH)
#   python3 docs/results/kernels/table_rows_v8.py --emulate  (CPU: checks the packing with a PRMT emulator)
import importlib, json, os, sys, tempfile, time
T0, BUDGET = time.time(), float(os.environ.get("BUDGET_S", 480))
import torch

SHIFTS = {4: (0, 16), 2: (0, 2, 16, 18)}  # bit offset of each group of four rows in a word
TABLE_WORDS = {4: 8, 2: 2}


def pack_rows(codes: torch.Tensor, b: int, bt: int) -> torch.Tensor:
    """(N, K) codes -> (N / bt, K, bt / RPW) int32 (RPW = 32 / b rows a word; tiles of ``bt`` rows, each
    tile's words contiguous): word c of column k in tile t holds rows t bt + c RPW .. + RPW - 1, row 4g + j
    of the word at bit SHIFTS[b][g] + 4 j."""
    n, k = codes.shape
    rpw = 32 // b
    c = codes.reshape(n // bt, bt // rpw, rpw, k).permute(0, 3, 1, 2).long()
    w = torch.zeros(c.shape[:3], dtype=torch.int64, device=codes.device)
    for r in range(rpw):
        w |= c[..., r] << (SHIFTS[b][r // 4] + 4 * (r % 4))
    return (w - ((w >> 31) << 32)).to(torch.int32).contiguous()  # two's complement


def table_planes(tables: torch.Tensor, b: int) -> torch.Tensor:
    """(K, >= 2^b) fp16 tables -> (K, TABLE_WORDS) int32: low bytes of entries 0 .. 2^b - 1 then high bytes."""
    t = tables[:, : 1 << b].contiguous().view(torch.int16).to(torch.int32) & 0xFFFF
    lo, hi = (t & 0xFF).to(torch.uint8), (t >> 8).to(torch.uint8)
    return torch.cat([lo, hi], 1).contiguous().view(torch.int32)


def prmt(a: int, b: int, sel: int) -> int:
    by = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF for i in range(4)]
    out = 0
    for i in range(4):
        s = (sel >> (4 * i)) & 0xF
        v = by[s & 7]
        if s & 8:
            v = 0xFF if v & 0x80 else 0
        out |= v << (8 * i)
    return out


def emulate_word(w: int, t: list[int], b: int) -> list[int]:
    """The fp16 bit patterns the asm of lookup(b) gives for one word (PTX semantics, in Python)."""
    w &= 0xFFFFFFFF
    t = [v & 0xFFFFFFFF for v in t]
    out = []
    for sh in SHIFTS[b]:
        if b == 4:
            s = (w >> sh) & 0x7777
            c = (((w >> sh) >> 1) & 0x4444) | 0x3210
            lo = prmt(prmt(t[0], t[1], s), prmt(t[2], t[3], s), c)
            hi = prmt(prmt(t[4], t[5], s), prmt(t[6], t[7], s), c)
        else:
            s = (w >> sh) & 0x3333
            lo, hi = prmt(t[0], t[0], s), prmt(t[1], t[1], s)
        p, q = prmt(lo, hi, 0x5140), prmt(lo, hi, 0x7362)
        out += [p & 0xFFFF, p >> 16, q & 0xFFFF, q >> 16]
    return out


def emulate_check() -> None:
    g = torch.Generator().manual_seed(0)
    for b in (4, 2):
        n, k = 64, 8
        codes = torch.randint(0, 1 << b, (n, k), generator=g)
        tables = torch.randn(k, 16, generator=g).half()
        words, planes = pack_rows(codes, b, 32), table_planes(tables, b)
        rpw = 32 // b
        for kk in range(k):
            for c in range(n // rpw):
                bits = emulate_word(int(words[c * rpw // 32, kk, c % (32 // rpw)]), [int(v) for v in planes[kk]], b)
                want = tables[kk, codes[c * rpw: (c + 1) * rpw, kk]].view(torch.int16).int() & 0xFFFF
                assert bits == want.tolist(), (b, kk, c, bits, want.tolist())
        print(f"{b}-bit packing and PRMT lookups agree with the tables")


ASM4 = ("{ .reg .b32 w, s, c, a, b, l, h, p, q; .reg .b16 h0, h1, h2, h3; "
        + "".join(f"shr.b32 w, $8, {sh}; and.b32 s, w, 0x7777; shr.b32 c, w, 1; and.b32 c, c, 0x4444; "
                  "or.b32 c, c, 0x3210; prmt.b32 a, $9, $10, s; prmt.b32 b, $11, $12, s; prmt.b32 l, a, b, c; "
                  "prmt.b32 a, $13, $14, s; prmt.b32 b, $15, $16, s; prmt.b32 h, a, b, c; "
                  "prmt.b32 p, l, h, 0x5140; prmt.b32 q, l, h, 0x7362; mov.b32 {h0, h1}, p; mov.b32 {h2, h3}, q; "
                  f"cvt.f32.f16 ${4*g}, h0; cvt.f32.f16 ${4*g+1}, h1; cvt.f32.f16 ${4*g+2}, h2; "
                  f"cvt.f32.f16 ${4*g+3}, h3; " for g, sh in enumerate(SHIFTS[4])) + "}")
ASM2 = ("{ .reg .b32 s, l, h, p, q; .reg .b16 h0, h1, h2, h3; "
        + "".join(f"shr.b32 s, $16, {sh}; and.b32 s, s, 0x3333; prmt.b32 l, $17, $17, s; prmt.b32 h, $18, $18, s; "
                  "prmt.b32 p, l, h, 0x5140; prmt.b32 q, l, h, 0x7362; mov.b32 {h0, h1}, p; mov.b32 {h2, h3}, q; "
                  f"cvt.f32.f16 ${4*g}, h0; cvt.f32.f16 ${4*g+1}, h1; cvt.f32.f16 ${4*g+2}, h2; "
                  f"cvt.f32.f16 ${4*g+3}, h3; " for g, sh in enumerate(SHIFTS[2])) + "}")


def kernel_source(b: int) -> str:
    rpw, tw = 32 // b, TABLE_WORDS[b]
    asm = ASM4 if b == 4 else ASM2
    ts = ", ".join(f"t{i}" for i in range(tw))
    vs = ", ".join(f"v{j}" for j in range(rpw))
    L = ["import triton", "import triton.language as tl", f"ASM = tl.constexpr({asm!r})", "",
         "@triton.jit",
         "def rows_kernel(X, Y, P, TT, N, K, KS, BLOCK_N: tl.constexpr, KR: tl.constexpr, SPLIT: tl.constexpr,",
         "                PF: tl.constexpr, JOIN: tl.constexpr):",
         f"    BNW: tl.constexpr = BLOCK_N // {rpw}",
         "    pid_n = tl.program_id(0)",
         "    pid_k = tl.program_id(1)",
         ]
    L += ["    if JOIN:", f"        acc = tl.zeros((KR, BNW, {rpw}), dtype=tl.float32)", "    else:"]
    L += [f"        acc{j} = tl.zeros((KR, BNW), dtype=tl.float32)" for j in range(rpw)]
    L += ["    cols = tl.arange(0, BNW)",
          "    base = P + pid_n * K * BNW",
          "    k_lo = pid_k * KS",
          "    k_hi = k_lo + KS",
          "    ks = k_lo + tl.arange(0, KR)",
          "    wn = tl.load(base + ks[:, None] * BNW + cols[None, :])",
          "    if PF:",
          "        xn = tl.load(X + ks)"]
    L += [f"        tn{i} = tl.load(TT + ks * {tw} + {i})" for i in range(tw)]
    L += ["    for k0 in range(k_lo, k_hi, KR):",
          "        ks = k0 + tl.arange(0, KR)",
          "        w = wn",
          "        kn = ks + KR",
          "        mk = kn < k_hi",
          "        wn = tl.load(base + kn[:, None] * BNW + cols[None, :], mask=mk[:, None], other=0)",
          "        if PF:",
          "            x = xn.to(tl.float32)[:, None]"]
    L += [f"            t{i} = tn{i}[:, None]" for i in range(tw)]
    L += ["            xn = tl.load(X + kn, mask=mk, other=0.0)"]
    L += [f"            tn{i} = tl.load(TT + kn * {tw} + {i}, mask=mk, other=0)" for i in range(tw)]
    L += ["        else:",
          "            x = tl.load(X + ks).to(tl.float32)[:, None]"]
    L += [f"            t{i} = tl.load(TT + ks * {tw} + {i})[:, None]" for i in range(tw)]
    cons = ",".join(["=f"] * rpw + ["r"] * (1 + tw))
    L += [f"        {vs} = tl.inline_asm_elementwise(ASM, {cons!r}, [w, {ts}], dtype=({'tl.float32, ' * rpw}), "
          "is_pure=True, pack=1)"]
    L += ["        if JOIN:"]
    nb = rpw.bit_length() - 1  # leaves in bit-reversed order: the nested joins' reshape puts v_j at j
    lvl = [f"v{int(format(i, f'0{nb}b')[::-1], 2)}" for i in range(rpw)]
    while len(lvl) > 1:
        lvl = [f"tl.join({a}, {b})" for a, b in zip(lvl[::2], lvl[1::2])]
    L += [f"            acc += tl.reshape({lvl[0]}, (KR, BNW, {rpw})) * x[:, :, None]",
          "        else:"]
    L += [f"            acc{j} += v{j} * x" for j in range(rpw)]
    L += ["    if JOIN:",
          "        s = tl.reshape(tl.sum(acc, 0), (BLOCK_N,))",
          "        o = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)",
          "        if SPLIT > 1:",
          "            tl.atomic_add(Y + o, s.to(Y.dtype.element_ty), mask=o < N, sem='relaxed')",
          "        else:",
          "            tl.store(Y + o, s.to(Y.dtype.element_ty), mask=o < N)",
          "    else:"]
    L += [f"        o = pid_n * BLOCK_N + cols * {rpw}", "        ok = o < N"]
    for j in range(rpw):
        L += [f"        s{j} = tl.sum(acc{j}, 0)",
              "        if SPLIT > 1:",
              f"            tl.atomic_add(Y + o + {j}, s{j}.to(Y.dtype.element_ty), mask=ok, sem='relaxed')",
              "        else:",
              f"            tl.store(Y + o + {j}, s{j}.to(Y.dtype.element_ty), mask=ok)"]
    return "\n".join(L) + "\n"


def load_kernel(b: int):
    root = tempfile.mkdtemp(prefix="table_rows_")
    name = f"table_rows_{b}_{os.getpid()}"
    with open(os.path.join(root, name + ".py"), "w") as f:
        f.write(kernel_source(b))
    sys.path.insert(0, root)
    return importlib.import_module(name).rows_kernel


def run_rows(kern, st, x, cfg):
    """cfg = (BLOCK_N, KR, warps, split, prefetch x and tables, one joined accumulator)."""
    bn, kr, nw, split, pf, join = cfg
    words, planes, n, k, b = st
    rpw = 32 // b
    y = (torch.zeros if split > 1 else torch.empty)(1, n, dtype=x.dtype, device=x.device)
    ks = k // split
    kern[(triton.cdiv(n, bn), split)](x, y, words[bn], planes, n, k, ks, BLOCK_N=bn, KR=kr, SPLIT=split, PF=pf, JOIN=join,
                                      num_warps=nw)
    return y


CONFIGS = [(bn, kr, nw, sp, 1, jn) for bn in (16, 32, 64) for kr in (128, 256, 512, 1024) for nw in (4, 8, 16)
           for sp in (1, 2) for jn in (0, 1) if bn * kr // (256 * nw) in (2, 4, 8)]  # 4-bit words per thread


def main(out: str) -> None:
    global triton
    import triton
    sys.path.insert(0, "benchmarks")
    from gpu_kernels import Timer, map_tensors, n_copies, state_bytes
    from lowbit.kernels.triton import table
    from lowbit.kernels.triton.random_weights import random_table

    dev = torch.device("cuda")
    timer = Timer(dev, 20)
    l2 = torch.cuda.get_device_properties(dev).L2_cache_size
    res = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "triton": triton.__version__,
           "command": " ".join(sys.argv), "rows": []}
    for b in [int(v) for v in os.environ.get("BITS", "4 2").split()]:
        kern = load_kernel(b)
        for n, k in [(4096, 4096), (4096, 11008), (11008, 4096)]:
            qw = random_table(n, k, b, 0, dev)
            x = torch.randn(1, k, device=dev).half()
            ref = (x.float() @ qw.tables.float()[torch.arange(k, device=dev)[None, :], qw.codes.long()].T)
            st = ({bt: pack_rows(qw.codes, b, bt) for bt in (16, 32, 64)}, table_planes(qw.tables, b), n, k, b)
            nb = st[0][16].numel() * 4 + st[1].numel() * 4
            copies = n_copies(nb, l2)
            sts = [st] + [({bt: v.clone() for bt, v in st[0].items()}, st[1].clone(), n, k, b) for _ in range(copies - 1)]
            best = None
            times = {}
            for cfg in CONFIGS:
                if time.time() - T0 > BUDGET:
                    break
                if k % (cfg[1] * cfg[3]) or (k // cfg[3]) % cfg[1]:
                    continue
                try:
                    y = run_rows(kern, st, x, cfg)
                    err = ((y.float() - ref).norm() / ref.norm()).item()
                    if not err < 2e-3:
                        print(f"  {b}-bit {n}x{k} {cfg}: rel err {err:.2e}", flush=True)
                        times[str(cfg)] = None
                        continue
                    t = timer([lambda s=s, c=cfg: run_rows(kern, s, x, c) for s in sts])[0]
                except Exception as e:
                    print(f"  {cfg} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    continue
                times[str(cfg)] = t
                if best is None or t < best[1]:
                    best = (cfg, t, err)
            # shipped table kernel, tuned configuration, and fp16
            ts = table.prepare_table(qw, dev)
            tcopies = n_copies(state_bytes(ts), l2)
            tss = [ts] + [map_tensors(ts, torch.clone) for _ in range(tcopies - 1)]
            y0 = table.run(ts, x)
            err0 = ((y0.float() - ref).norm() / ref.norm()).item()
            t_ship = timer([lambda s=s: table.run(s, x) for s in tss])[0]
            w16 = [torch.randn(n, k, device=dev).half() for _ in range(n_copies(2 * n * k, l2))]
            t16 = timer([lambda w=w: x @ w.T for w in w16])[0]
            if best is None:
                best = (None, float("nan"), float("nan"))
            row = {"bits": b, "shape": [n, k], "rows_best": best[0], "rows_us": best[1], "rows_err": best[2],
                   "shipped_us": t_ship, "shipped_err": err0, "fp16_us": t16, "all": times}
            res["rows"].append(row)
            print(f"table{b} {n}x{k}: rows {best[1]:.2f} us {best[0]} err {best[2]:.1e} | shipped {t_ship:.2f} "
                  f"(err {err0:.1e}) | fp16 {t16:.2f}", flush=True)
            with open(out, "w") as f:
                json.dump(res, f, indent=1)


def profile_main() -> None:
    """One launch of each of a few configurations on table4 4096 x 4096 (for ncu)."""
    global triton
    import triton
    from lowbit.kernels.triton import table
    from lowbit.kernels.triton.random_weights import random_table

    dev = torch.device("cuda")
    n = k = 4096
    qw = random_table(n, k, 4, 0, dev)
    x = torch.randn(1, k, device=dev).half()
    kern = load_kernel(4)
    st = ({bt: pack_rows(qw.codes, 4, bt) for bt in (16, 32, 64)}, table_planes(qw.tables, 4), n, k, 4)
    for cfg in [(64, 128, 8, 4, 1, 1)]:
        run_rows(kern, st, x, cfg)
    ts = table.prepare_table(qw, dev)
    table.run(ts, x)
    torch.cuda.synchronize()


if __name__ == "__main__":
    if sys.argv[1:] == ["--emulate"]:
        emulate_check()
    elif sys.argv[1:] == ["--profile"]:
        profile_main()
    else:
        main(sys.argv[1])
