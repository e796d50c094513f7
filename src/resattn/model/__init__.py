"""The model: attention modules and their registry, the layers, the kind table, network specs,
``build``, parameter/FLOP counts, the notebooks' networks and torchvision's ResNets as presets, and
:func:`from_torchvision` (a torchvision ResNet as a spec and a ``state_dict``).

Everything here imports only torch, math and the standard library: the exporter copies these
classes' source into the standalone model file (DESIGN.md §6).
"""

from resattn.errors import SpecError
from resattn.model import presets
from resattn.model.attention import ATTENTIONS, attention_options, make_attention
from resattn.model.kinds import KIND_TABLE, KINDS
from resattn.model.net import Net, build, plan
from resattn.model.retrofit import RetrofitError, from_torchvision
from resattn.model.spec import BRANCHES, NORMS, STEMS, AttentionSpec, BlockSpec, NetSpec
from resattn.model.stats import ModelStats, model_stats

__all__ = [
    "ATTENTIONS",
    "BRANCHES",
    "KINDS",
    "KIND_TABLE",
    "NORMS",
    "STEMS",
    "AttentionSpec",
    "BlockSpec",
    "ModelStats",
    "Net",
    "NetSpec",
    "RetrofitError",
    "SpecError",
    "attention_options",
    "build",
    "from_torchvision",
    "make_attention",
    "model_stats",
    "plan",
    "presets",
]
