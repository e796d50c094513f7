"""The model: attention modules and their registry, the layers, the kind table, network specs,
``build``, parameter/FLOP counts and the notebooks' networks as presets.

Everything here imports only torch, math and the standard library: the exporter copies these
classes' source into the standalone model file (DESIGN.md §6).
"""

from resattn.errors import SpecError
from resattn.model import presets
from resattn.model.attention import ATTENTIONS, attention_options, make_attention
from resattn.model.kinds import KIND_TABLE, KINDS
from resattn.model.net import Net, build, plan
from resattn.model.spec import NORMS, AttentionSpec, BlockSpec, NetSpec
from resattn.model.stats import ModelStats, model_stats

__all__ = [
    "ATTENTIONS",
    "KINDS",
    "KIND_TABLE",
    "NORMS",
    "AttentionSpec",
    "BlockSpec",
    "ModelStats",
    "Net",
    "NetSpec",
    "SpecError",
    "attention_options",
    "build",
    "make_attention",
    "model_stats",
    "plan",
    "presets",
]
