"""Test-wide setup: Triton kernels run in the interpreter on machines without a GPU."""

import os
import shutil

# Must be set before triton.jit decorates our kernels, i.e. before visionssm's Triton modules import.
if shutil.which("nvidia-smi") is None and not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture
def triton_device():
    """Device for Triton kernel tests: CUDA when present, else CPU under TRITON_INTERPRET=1."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if not INTERPRET:
        pytest.skip("no CUDA and TRITON_INTERPRET is not set")
    return torch.device("cpu")


_THREADS = torch.get_num_threads()  # at start-up, before any fixture (module-scoped ones included) changes it


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Some tests (and the bench/profile CLI's --threads) set torch's thread count; give it back, so a later
    test comparing this process with a child process (resume is bit-exact) sees the same threading."""
    torch.set_num_threads(_THREADS)
    yield
    torch.set_num_threads(_THREADS)
