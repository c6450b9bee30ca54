"""A stand-in for PyTorch's CUDA surface that scripts/gpu-check uses, for checking the script on machines
without a GPU (crates/stoke/tests/gpu.rs). Devices are what CUDA_VISIBLE_DEVICES names; an allocation past
CUDA_MPS_PINNED_DEVICE_MEM_LIMIT fails as CUDA's does; each allocation is recorded where the stand-in NVML
(tests/gpu/fake_nvml.c) reads the GPU memory of processes: the directory in STATE below."""

import os

STATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "state")
uint8 = "uint8"


def _visible():
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    return v.split(",") if v else []


class _Cuda:
    @staticmethod
    def is_available():
        return True

    @staticmethod
    def device_count():
        return len(_visible()) or 1

    @staticmethod
    def get_device_name(i):
        return f"Fake GPU {_visible()[i] if _visible() else i}"

    @staticmethod
    def synchronize():
        pass


cuda = _Cuda()


class _Tensor:
    def __matmul__(self, other):
        return self

    def __truediv__(self, other):
        return self

    def norm(self):
        return 1.0


def zeros(*args, **kwargs):
    return _Tensor()


def randn(*args, **kwargs):
    return _Tensor()


def empty(n, dtype=None, device=None):
    limit = os.environ.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")
    if limit and n > int(limit.split("=")[1].rstrip("M")) * 1024 * 1024:
        raise RuntimeError("CUDA out of memory. Tried to allocate more than the pinned device memory limit")
    for uuid in _visible()[:1]:
        index = int(uuid.rsplit("-", 1)[1])
        with open(os.path.join(STATE, f"procs-{index}"), "a") as f:
            f.write(f"{os.getpid()} {n}\n")
    return _Tensor()
