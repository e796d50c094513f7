"""resattn: where should attention sit in each block of a residual CNN? Answered by measurement.

The public API::

    resattn.NetSpec, resattn.BlockSpec, resattn.AttentionSpec   # architecture as data
    resattn.SpecError                                           # invalid spec (a ValueError)
    resattn.build(spec) -> torch.nn.Module                      # spec -> model
    resattn.model_stats(model_or_spec, input_size)              # params + forward FLOPs
    resattn.ATTENTIONS                                          # name -> mask-producer class
    resattn.make_attention(name, channels, **options)
    resattn.KINDS                                               # the block kinds
    resattn.presets                                             # the notebooks' networks, ResNet-18/34/50
    resattn.from_torchvision(model) -> (NetSpec, state_dict)    # a torchvision ResNet as a spec + weights

The package is organised by subsystem (see README.md, "Layout"): :mod:`resattn.model` (torch only:
what an exported file copies), :mod:`resattn.training`, :mod:`resattn.study`, :mod:`resattn.export`,
:mod:`resattn.analysis` and :mod:`resattn.cli`.

The names above are resolved on first use (PEP 562), so ``import resattn`` and the command line's
``--help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    "ATTENTIONS": "resattn.model.attention",
    "make_attention": "resattn.model.attention",
    "KINDS": "resattn.model.kinds",
    "NORMS": "resattn.model.spec",
    "AttentionSpec": "resattn.model.spec",
    "BlockSpec": "resattn.model.spec",
    "NetSpec": "resattn.model.spec",
    "SpecError": "resattn.errors",
    "Net": "resattn.model.net",
    "build": "resattn.model.net",
    "from_torchvision": "resattn.model.retrofit",
    "RetrofitError": "resattn.model.retrofit",
    "ModelStats": "resattn.model.stats",
    "model_stats": "resattn.model.stats",
}
#: public sub-module names
_MODULES: dict[str, str] = {"presets": "resattn.model.presets"}

__all__ = sorted([*_PUBLIC, *_MODULES, "__version__"])

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from resattn.errors import SpecError  # noqa: F401
    from resattn.model import presets  # noqa: F401
    from resattn.model.attention import ATTENTIONS, make_attention  # noqa: F401
    from resattn.model.kinds import KINDS  # noqa: F401
    from resattn.model.net import Net, build  # noqa: F401
    from resattn.model.retrofit import RetrofitError, from_torchvision  # noqa: F401
    from resattn.model.spec import NORMS, AttentionSpec, BlockSpec, NetSpec  # noqa: F401
    from resattn.model.stats import ModelStats, model_stats  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value: Any = importlib.import_module(_MODULES[name])
    elif name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        raise AttributeError(f"module 'resattn' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
