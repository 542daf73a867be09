# ruff: noqa
# The Triton kernel package with textual edits, for session 24's diagnostics (outlier_parts.py, aqlm_parts.py,
# aqlm_sass.py, aqlm_ab.py): every module of KERNELS_SRC (default this checkout's kernels) copied into a temporary
# package, each edit asserted to apply exactly once, the per-GPU configuration files linked.
import importlib, os, re, sys, tempfile

SRC = os.environ.get("KERNELS_SRC", "kernels/src/lowbit/kernels/triton")


def edited(name: str, edits, module: str):
    """``module`` of a copy of the kernels with ``edits`` applied: ``(file, old, new)`` triples, ``file`` a module
    name without ``.py``; ``name`` labels the copy."""
    root = tempfile.mkdtemp(prefix="edited_kernels_")
    pkg = "edited_" + re.sub(r"\W", "_", name)
    os.makedirs(os.path.join(root, pkg))
    done = set()
    for f in sorted(os.listdir(SRC)):
        if not f.endswith(".py"):
            continue
        text = open(os.path.join(SRC, f)).read()
        for i, (where, old, new) in enumerate(edits):
            if where == f[:-3]:
                assert text.count(old) == 1, (name, where, old[:60])
                text = text.replace(old, new)
                done.add(i)
        open(os.path.join(root, pkg, f), "w").write(text)
    assert len(done) == len(edits), (name, "edits of modules not found")
    os.symlink(os.path.abspath(os.path.join(SRC, "tuned")), os.path.join(root, pkg, "tuned"))
    sys.path.insert(0, root)
    return importlib.import_module(f"{pkg}.{module}")
