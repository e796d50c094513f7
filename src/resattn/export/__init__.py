"""Export: a standalone ``.py`` model file whose code is copied from :mod:`resattn.model`
(:mod:`~resattn.export.source`) and an ONNX model (:mod:`~resattn.export.onnx`). Depends on
:mod:`resattn.model` only; picking a study's trial to export is :mod:`resattn.analysis.winner`."""

from resattn.export.onnx import ONNX_OPSET, OnnxExport, export_onnx, load_weights
from resattn.export.source import ExportError, export_source, write_export

__all__ = [
    "ONNX_OPSET",
    "ExportError",
    "OnnxExport",
    "export_onnx",
    "export_source",
    "load_weights",
    "write_export",
]
