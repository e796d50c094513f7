"""Export: a standalone ``.py`` model file whose code is copied from :mod:`resattn.model`
(:mod:`~resattn.export.source`), an ONNX model (:mod:`~resattn.export.onnx`), and both for a trial
of a stored study (:mod:`~resattn.export.trial`)."""

from resattn.export.onnx import ONNX_OPSET, OnnxExport, export_onnx, load_weights
from resattn.export.source import ExportError, export_source, write_export
from resattn.export.trial import export_trial, trial_spec

__all__ = [
    "ONNX_OPSET",
    "ExportError",
    "OnnxExport",
    "export_onnx",
    "export_source",
    "export_trial",
    "load_weights",
    "trial_spec",
    "write_export",
]
