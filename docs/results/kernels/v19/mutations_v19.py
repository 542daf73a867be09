# ruff: noqa
# Session 29 (v19): the ticket test under the interpreter with four mutations of common.store_y, one at a time
# (run from the repository root with the packages' sources on PYTHONPATH as PP; restores the file after).
# Output: mutations_v19.log (each line: the mutated text, pytest's last line, its first two error lines).
import subprocess, os
p = 'kernels/src/lowbit/kernels/triton/common.py'
orig = open(p).read()
muts = [("            tl.store(ptr, v, mask=mask)\n            tl.debug_barrier()", "            add_y(ptr, v, mask)\n            tl.debug_barrier()"),
        ("tl.atomic_add(t, 0x10000 - PARTS", "tl.atomic_add(t, 0x10000 - PARTS + 1"),
        ("mark = ((ticket >> 16) + 1) & 0xFFFF", "mark = ((ticket >> 16) + 1)"),
        ("        if arrived == PARTS - 1:\n", "        if arrived == PARTS:\n")]
env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.environ["PP"])
try:
    for a, b in muts:
        assert a in orig
        open(p, 'w').write(orig.replace(a, b))
        r = subprocess.run(".venv/bin/python -m pytest -q -x -p no:cacheprovider kernels/tests/test_triton_kernels.py -k tickets".split(),
                           capture_output=True, text=True, env=env, timeout=900)
        err = [l for l in r.stdout.splitlines() if l.startswith("E ")][:2]
        print(repr(a[:40]), '->', r.stdout.strip().splitlines()[-1], err, flush=True)
finally:
    open(p, 'w').write(orig)
