"""Checkpoints: one ``torch.save`` file holding everything needed to rebuild a trained network.

A checkpoint is a plain dict (loaded with ``weights_only=True``, so no code runs on load)::

    format          "dosmatgen-checkpoint"
    format_version  1
    kind            model kind of :mod:`dosmatgen.model.factory` ("diffusion", "regressor", ...)
    config          the model's config dict (``model.config``); rebuilds the architecture
    state_dict      inference weights (the EMA weights when the trainer keeps an EMA)
    standardiser    :meth:`DOSStandardiser.to_dict` of the DOS standardisation, or None
    code            {"dosmatgen": version, "git": commit or None, "torch": version}
    extra           free-form: the trainer puts optimiser/scheduler/epoch/RNG state here

Writes are atomic (temporary file + rename), so an interrupted save never leaves a half file;
a truncated, corrupt or foreign file raises :class:`~dosmatgen.errors.CheckpointError`.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import torch

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.errors import CheckpointError, ConfigError, DataError
from dosmatgen.io import atomic_temp_path

FORMAT = "dosmatgen-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "kind", "config", "state_dict")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the source tree this package was imported from, if it is a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def code_version() -> dict[str, str | None]:
    """Versions recorded in every checkpoint: dosmatgen, its git commit (or None), torch."""
    import dosmatgen

    return {"dosmatgen": dosmatgen.__version__, "git": git_commit(), "torch": str(torch.__version__)}


def save_checkpoint(path: str | Path, model: torch.nn.Module, kind: str,
                    standardiser: DOSStandardiser | None, extra: dict[str, Any] | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Atomically write a checkpoint of ``model`` (any network obeying the factory contract:
    ``model.config`` is its config dict).

    The entries are those of the module docstring; ``extra`` must load without code (tensors,
    numbers, strings, lists, dicts); ``state_dict`` replaces ``model.state_dict()`` (e.g. EMA weights).
    """
    path = Path(path)
    weights = state_dict if state_dict is not None else model.state_dict()
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": str(kind), "config": _plain(model.config),
               "state_dict": {k: v.detach().to("cpu") for k, v in weights.items()},
               "standardiser": None if standardiser is None else standardiser.to_dict(),
               "code": code_version(), "extra": extra or {}}
    try:
        with atomic_temp_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
    except RuntimeError as exc:  # torch's zip writer hides a full disk (OSError) behind its own error
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate the raw checkpoint dict; raise :class:`CheckpointError` with the reason
    when the file is missing, truncated, corrupt, or not a dosmatgen checkpoint."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file (e.g. {path / 'best.pt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the run that wrote it was "
                              "probably killed; delete it and retrain or resume from another file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types (RuntimeError, UnpicklingError, EOFError, ...)
        if "Weights only load failed" in str(exc):
            raise CheckpointError(f"{path} holds Python objects other than tensors and plain "
                                  "containers; it is not a dosmatgen checkpoint and is not unpickled "
                                  "for safety") from exc
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or not a PyTorch file "
                              f"({type(exc).__name__}: {_short(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a dosmatgen checkpoint "
                              f"(no 'format': {FORMAT!r} entry)")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks entries {missing}")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload['format_version']}; "
                              f"this dosmatgen reads up to {FORMAT_VERSION}: upgrade dosmatgen")
    for key, default in (("extra", {}), ("standardiser", None), ("code", {})):
        payload.setdefault(key, default)
    return payload


def model_from_payload(payload: dict[str, Any], device: str | torch.device = "cpu",
                       source: str = "checkpoint") -> torch.nn.Module:
    """Rebuild the network of a :func:`read_checkpoint` dict and load its weights."""
    from dosmatgen.model.factory import build_model

    try:
        model = build_model(payload["kind"], payload["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{source}: cannot rebuild the model: {exc}") from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{source}: its config does not fit this dosmatgen version "
                              f"({type(exc).__name__}: {_short(exc)}); written by "
                              f"{payload.get('code')}") from exc
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not match the architecture "
                              f"({_short(exc)}); written by {payload.get('code')}") from exc
    return model.to(device)


def load_model(path: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, DOSStandardiser | None, dict[str, Any]]:
    """Rebuild a trained network from ``path``.

    Returns ``(model, standardiser, meta)`` with the model in eval mode on ``device``; ``meta``
    holds ``kind``, ``config``, ``code`` and the small entries of ``extra`` (epoch, step, losses,
    training config), not optimiser state.
    """
    payload = read_checkpoint(path)
    model = model_from_payload(payload, device, source=f"checkpoint {path}")
    model.eval()
    std = None
    if payload["standardiser"] is not None:
        try:
            std = DOSStandardiser.from_dict(payload["standardiser"])
        except (DataError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: stored DOS standardiser is malformed: {exc}") from exc
    extra = payload["extra"] if isinstance(payload["extra"], dict) else {}
    meta = {"kind": payload["kind"], "config": payload["config"], "code": payload["code"], "path": str(path)}
    meta.update({k: v for k, v in extra.items() if k in _META_KEYS})
    return model, std, meta


#: ``extra`` entries copied into ``load_model``'s meta.
_META_KEYS = ("epoch", "step", "train_config", "best_val_loss", "val_loss", "train_loss", "world_size",
              "finished")


def _plain(obj: Any) -> Any:
    """Config dicts must survive ``weights_only`` loading: only dict/list/str/number/bool/None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise CheckpointError(f"model config holds a {type(obj).__name__}; configs must be plain "
                          "dicts/lists/numbers/strings")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= limit else first[:limit] + "..."
