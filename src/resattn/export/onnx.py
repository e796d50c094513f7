"""Export an architecture as an ONNX model, with fresh or trained weights, checked against PyTorch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from resattn.export.source import ExportError, revalidate
from resattn.files import replaced_atomically
from resattn.model.net import build
from resattn.model.spec import NetSpec

__all__ = ["ONNX_OPSET", "ONNX_TOLERANCE", "OnnxExport", "export_onnx", "load_weights"]


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the path, whether the weights were fresh (untrained), and the
    largest absolute difference between PyTorch's and onnxruntime's logits (``None``: not checked,
    because onnxruntime is not installed or the check was turned off)."""

    path: Path
    fresh_weights: bool
    max_abs_diff: float | None
    opset: int


#: ONNX opset written by :func:`export_onnx`.
ONNX_OPSET = 17
#: The largest absolute logit difference the onnxruntime check accepts.
ONNX_TOLERANCE = 1e-4


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state_dict from ``path``: ``weights.pt`` of ``resattn train`` (a plain state_dict) or its
    ``checkpoint.pt`` (the ``model`` entry). Loaded with ``weights_only=True``; :class:`ExportError`
    when the file is missing or holds something else."""
    import torch

    target = Path(path).expanduser()
    if not target.is_file():
        raise ExportError(f"no weights file at {str(target)!r} (give the weights.pt written by resattn train)")
    try:
        obj = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of a file that is not a torch save
        reason = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
        raise ExportError(f"cannot read weights from {str(target)!r}: not a weights file written by torch.save "
                          f"({type(err).__name__}: {reason}); give the weights.pt written by resattn train") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "optimizer" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise ExportError(f"{str(target)!r} does not hold a state_dict (a mapping of names to tensors)")
    return obj


def export_onnx(
    spec: NetSpec,
    out: str | os.PathLike[str],
    *,
    weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    image_size: int | tuple[int, int] = 32,
    check: bool = True,
    seed: int = 0,
) -> OnnxExport:
    """Write ``spec``'s model as an ONNX file (input ``images`` ``(batch, C, H, W)`` float32,
    normalised; output ``logits``; the batch axis is dynamic) and return what was written.

    ``weights``: a path (see :func:`load_weights`) or a state_dict, loaded with ``strict=True``;
    ``None`` exports freshly initialised weights (seeded by ``seed``). With ``check`` and
    onnxruntime installed, both run one random batch and :attr:`OnnxExport.max_abs_diff` is
    measured; a difference above :data:`ONNX_TOLERANCE` is an :class:`ExportError`. Without the
    ``onnx`` package: an :class:`ExportError` that says ``pip install 'resattn[onnx]'``. The file
    appears complete or not at all.
    """
    import importlib.util

    import torch

    if importlib.util.find_spec("onnx") is None:
        raise ExportError("ONNX export needs the onnx package: pip install 'resattn[onnx]'")
    spec = revalidate(spec)  # the same checks as the .py export
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = (_size(v) for v in image_size)
    state = weights if weights is None or isinstance(weights, Mapping) else load_weights(weights)
    torch.manual_seed(seed)
    model = build(spec)
    if state is not None:
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ExportError(f"the weights do not fit this architecture: {first} "
                              "(were they trained for another spec?)") from None
    model.eval()
    target = Path(out).expanduser()
    if target.is_dir():
        raise ExportError(f"cannot write {str(target)!r}: it is a folder; give a file path such as model.onnx")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, spec.in_channels, h, w, generator=generator)
    try:
        with replaced_atomically(target) as tmp:
            _torch_onnx_export(model, x, tmp)
            diff = _onnxruntime_diff(model, x, tmp) if check else None
            if diff is not None and not diff <= ONNX_TOLERANCE:
                raise ExportError(f"the ONNX model differs from PyTorch by up to {diff:.3g} (tolerance "
                                  f"{ONNX_TOLERANCE:g}); not written")
    except OSError as err:
        raise ExportError(f"cannot write {str(target)!r}: {err.strerror or err}") from None
    return OnnxExport(path=target, fresh_weights=state is None, max_abs_diff=diff, opset=ONNX_OPSET)


def _torch_onnx_export(model: nn.Module, x: Any, path: str) -> None:
    """The TorchScript-based exporter (``dynamo=False``): one self-contained file, no onnxscript
    optimisation pass, a dynamic batch axis."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(
                model, (x,), path, dynamo=False, opset_version=ONNX_OPSET,
                input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
        except Exception as err:  # exporter failures: report them on one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(f"torch.onnx.export failed: {first}") from None


def _onnxruntime_diff(model: nn.Module, x: Any, path: str) -> float | None:
    """Max |PyTorch − onnxruntime| on ``x``; ``None`` when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import numpy as np
    import torch

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"images": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    return float(np.max(np.abs(got - want)))


def _size(value: Any) -> int:
    if type(value) is not int or not 4 <= value <= 1024:
        raise ExportError(f"cannot export: image_size must be an integer from 4 to 1024, got {value!r}")
    return int(value)
