"""Triton GPU kernels for every stored format (uniform, table, binary, additive; sparse outliers in the
same pass). Importing this package does not import ``triton``: the kernel modules do, and the kernel
table (:mod:`lowbit.kernels.dispatch`) reaches them only through :func:`available` and lazy wrappers."""
