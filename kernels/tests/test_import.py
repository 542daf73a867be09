"""lowbit.kernels installs and imports on its own (kernels land with the runtime issue)."""

import lowbit.kernels


def test_version() -> None:
    assert lowbit.kernels.__version__ == "0.1.0"
