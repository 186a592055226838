"""Architecture factory, kept apart from weight loading (see :mod:`dosmatgen.checkpoint`).

Every trainable network in the project is a ``torch.nn.Module`` with
``from_config(config: dict) -> Module``, a ``config`` property giving that dict back, and
``loss(batch) -> dict[str, Tensor]`` (key ``"loss"`` is optimised). The trainer and the checkpoint
code only know this contract and the ``kind`` names below.
"""

from __future__ import annotations

import importlib
from typing import Any

from dosmatgen.errors import ConfigError

#: Model size presets: tiny (tests), compact (CPU, the demo), paper (the paper's 12.3 M-parameter denoiser).
SIZES: tuple[str, ...] = ("tiny", "compact", "paper")
#: kind -> "module:Class". Imported lazily so that importing the factory costs nothing.
MODEL_KINDS: dict[str, str] = {
    "diffusion": "dosmatgen.model.diffusion:JointDiffusion",
    "regressor": "dosmatgen.model.regressor:TimeDependentDOSRegressor",
    "surrogate": "dosmatgen.model.surrogate:SurrogateDOSModel",
}


def model_class(kind: str) -> type:
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_KINDS)}")
    module_name, cls_name = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build_model(kind: str, config: dict[str, Any]):
    """Build an untrained network of ``kind`` from its config dict."""
    return model_class(kind).from_config(config)


def model_config_for_size(kind: str, size: str) -> dict[str, Any]:
    """Default architecture config of ``kind`` at ``size`` (tiny: tests, compact: CPU, paper:
    the paper's 12.3 M-parameter denoiser). A model class may define ``default_config(size)``."""
    if size not in SIZES:
        raise ConfigError(f"unknown model size {size!r}; known sizes: {list(SIZES)}")
    cls = model_class(kind)
    if hasattr(cls, "default_config"):
        return dict(cls.default_config(size))
    from dosmatgen.model.config import ModelConfig

    return {"model": getattr(ModelConfig, size)().to_dict()}
