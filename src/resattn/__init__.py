"""resattn: where should attention sit in each block of a residual CNN? Answered by measurement.

The public API::

    resattn.NetSpec, resattn.BlockSpec, resattn.AttentionSpec   # architecture as data
    resattn.SpecError                                           # invalid spec (a ValueError)
    resattn.build(spec) -> torch.nn.Module                      # spec -> model
    resattn.model_stats(model_or_spec, input_size)              # params + forward FLOPs
    resattn.ATTENTIONS                                          # name -> mask-producer class
    resattn.KINDS                                               # the block kinds
    resattn.presets                                             # the notebooks' networks
"""

from resattn import presets
from resattn.attention import ATTENTIONS, make_attention
from resattn.build import Net, build
from resattn.spec import KINDS, NORMS, AttentionSpec, BlockSpec, NetSpec, SpecError
from resattn.stats import ModelStats, model_stats

__version__ = "0.1.0"

__all__ = [
    "ATTENTIONS",
    "KINDS",
    "NORMS",
    "AttentionSpec",
    "BlockSpec",
    "ModelStats",
    "Net",
    "NetSpec",
    "SpecError",
    "__version__",
    "build",
    "make_attention",
    "model_stats",
    "presets",
]
