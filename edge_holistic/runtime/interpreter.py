"""LiteRT interpreter wrapper: one interpreter per loaded model, inputs written in place.

LiteRT (``ai-edge-litert``) is preferred; ``tflite_runtime`` is the fallback for
boards where only that wheel exists. Both expose the same ``Interpreter`` class.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import numpy as np


T = TypeVar("T")


class RuntimeMissingError(RuntimeError):
    """Neither ai-edge-litert nor tflite-runtime can be imported."""


_BACKEND: Optional[Tuple[str, Callable]] = None
_BACKEND_LOCK = threading.Lock()


def backend() -> Tuple[str, Callable]:
    """Return (name, Interpreter class) of the first importable runtime."""
    global _BACKEND
    with _BACKEND_LOCK:
        if _BACKEND is None:
            try:
                from ai_edge_litert.interpreter import Interpreter  # type: ignore

                _BACKEND = ("ai-edge-litert", Interpreter)
            except ImportError as litert_err:
                try:
                    from tflite_runtime.interpreter import Interpreter  # type: ignore

                    _BACKEND = ("tflite-runtime", Interpreter)
                except ImportError as tfl_err:
                    raise RuntimeMissingError(
                        "no TFLite runtime: install 'ai-edge-litert' (preferred) or "
                        "'edge-holistic[tflite]' (tflite-runtime, needs numpy<2); "
                        f"errors: {litert_err}; {tfl_err}"
                    ) from tfl_err
        return _BACKEND


def backend_version() -> str:
    name, _ = backend()
    try:
        from importlib.metadata import version

        return f"{name} {version(name)}"
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return name


class TfliteModel:
    """One interpreter, its preallocated input tensor and outputs matched by shape.

    Not thread-safe by design: each pipeline owns its interpreters, so invokes on
    different models can run on different threads (LiteRT releases the GIL).
    """

    def __init__(self, path: str, num_threads: int = 2, name: str = "") -> None:
        _, interpreter_cls = backend()
        self.path = path
        self.name = name or os.path.basename(path)
        self.interpreter = interpreter_cls(model_path=path, num_threads=max(1, int(num_threads)))
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index: int = inp["index"]
        self.input_shape: Tuple[int, ...] = tuple(int(v) for v in inp["shape"])
        self.input_dtype = inp["dtype"]
        q = inp.get("quantization", (0.0, 0))
        self.input_quant: Tuple[float, int] = (float(q[0]), int(q[1]))
        self.outputs: List[dict] = self.interpreter.get_output_details()
        self.output_shapes: List[Tuple[int, ...]] = [tuple(int(v) for v in d["shape"]) for d in self.outputs]
        self._invoke = self.interpreter.invoke
        self._get = self.interpreter.get_tensor
        self._set = self.interpreter.set_tensor
        self.invocations = 0

    @property
    def height(self) -> int:
        return self.input_shape[1]

    @property
    def width(self) -> int:
        return self.input_shape[2]

    def output_index_by_size(self, sizes: Sequence[int]) -> List[int]:
        """Map wanted flat output sizes to output tensor indices.

        Bare converted models name outputs Identity, Identity_1, ... in no
        guaranteed order, so outputs are matched by element count.
        """
        counts = [int(np.prod(s)) for s in self.output_shapes]
        found: List[int] = []
        for size in sizes:
            matches = [i for i, c in enumerate(counts) if c == size and i not in found]
            if not matches:
                raise ValueError(f"{self.name}: no output with {size} values (outputs: {self.output_shapes})")
            found.append(matches[0])
        return [self.outputs[i]["index"] for i in found]

    def write_input(self, fill: Callable[[np.ndarray], T]) -> T:
        """Call ``fill(view)`` with a writable (H, W, C) view of the input tensor.

        Crops are warped and normalised straight into the tensor, with no extra
        copy. The view is dropped before returning: LiteRT refuses to invoke
        while a numpy view of its buffers is alive.
        """
        view = self.interpreter.tensor(self.input_index)()[0]
        try:
            return fill(view)
        finally:
            del view

    def invoke(self, output_indices: Sequence[int]) -> List[np.ndarray]:
        """Invoke on what :meth:`write_input` wrote; return copies of the chosen outputs."""
        self._invoke()
        self.invocations += 1
        if self.invocations == 1:
            release_file_pages(self.path)
        # get_tensor already returns an owned copy (checked: writes to it never reach the
        # interpreter), so no second copy: the pose heatmap alone is 640 KB per frame.
        return [self._get(i) for i in output_indices]

    def run(self, tensor: np.ndarray, output_indices: Sequence[int]) -> List[np.ndarray]:
        """Set the input (float32 NHWC), invoke, return copies of the chosen outputs."""
        if tensor.dtype != np.float32:
            tensor = tensor.astype(np.float32)
        if tensor.ndim == 3:
            tensor = tensor[None]
        self._set(self.input_index, tensor)
        self._invoke()
        self.invocations += 1
        if self.invocations == 1:
            release_file_pages(self.path)
        # get_tensor already returns an owned copy (checked: writes to it never reach the
        # interpreter), so no second copy: the pose heatmap alone is 640 KB per frame.
        return [self._get(i) for i in output_indices]


_MADV_DONTNEED = 4


def release_file_pages(path: str) -> int:
    """Drop this process's resident pages of the memory-mapped model file; return bytes advised.

    Why: LiteRT maps the .tflite file and XNNPACK copies every weight into its own
    packed buffers when the model is prepared and first run; from then on the mapped
    float16 weights are not read again, yet they stay counted in RSS (about 20 MB for
    the holistic models, a tenth of the footprint). The mapping is read-only and
    file-backed, so MADV_DONTNEED only lets the kernel drop the pages; anything that
    does read them later faults them back from the page cache. Linux only; elsewhere,
    or on any failure, nothing happens. Also trims glibc's heap once (load-time
    temporaries freed by the packing).
    """
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        target = os.path.realpath(path)
        released = 0
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or fields[5].strip() != target or "w" in fields[1]:
                    continue
                start, end = (int(v, 16) for v in fields[0].split("-"))
                if madvise(start, end - start, _MADV_DONTNEED) == 0:
                    released += end - start
        trim_heap()
        return released
    except (OSError, AttributeError, ValueError):
        return 0


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Serve allocations >= ``nbytes`` (video frames, crops of them) with their own mmap.

    Why: glibc raises its mmap threshold dynamically each time a large block is freed,
    after which every decoded frame (2.7 MB at 720p) comes from the heap and leaves it
    fragmented; a long-running daemon's RSS then creeps up by tens of MB. A fixed
    threshold returns each frame to the kernel when it is freed (measured: daemon RSS
    252 -> 241 MB on the 720p clip). Call once at start-up; True if applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        return bool(mallopt is not None and mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1)
    except (OSError, AttributeError):
        return False


def trim_heap() -> None:
    """Hand glibc's free heap pages back to the kernel (malloc_trim), e.g. after interpreters
    are dropped: freed packed weights otherwise stay in RSS. No-op where unavailable."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
        if trim is not None:
            trim(0)
    except (OSError, AttributeError):
        pass


def probe_outputs(model: TfliteModel) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of a model's outputs, for diagnostics (`models verify`)."""
    return {d["name"]: tuple(int(v) for v in d["shape"]) for d in model.outputs}
