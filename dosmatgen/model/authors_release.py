"""Read the authors' released CFG model (Fung-Lab/DOSMatGen) into a :class:`JointDiffusion`.

A release is the folder their ``run_diffusion_CFG.py`` writes: one PyTorch Lightning ``*.ckpt``,
``hparams.yaml``, ``prop_scaler.pt`` (the DOS standardiser) and ``lattice_scaler.pt`` (unused by
the CFG model). Nothing of Lightning, omegaconf or the authors' package is imported:

- **Safe loading.** ``torch.load(weights_only=True)`` with an explicit allow-list: the omegaconf
  containers of the pickled hyper-parameters and the authors' scaler class
  ``dosmatgen.utils.data.StandardScalerTorch`` (a module path of *their* package, which shares our
  top-level name) are mapped by name onto inert stand-ins that only store their pickled state.
  Any other class in the pickle is refused.
- **Exact weight map** (their decoder -> our :class:`~dosmatgen.model.denoiser.CSPNet`):
  their Fourier features use k = 0..F-1 and ours k = 1..F, so the sin k = 0 columns of each
  edge MLP (which see 0) are dropped, the cos k = 0 columns (which see 1) are added to its bias,
  and our model gets F - 1 frequencies; the first edge Linear on [h_i, h_j, geometry] is split
  into our per-atom and per-edge parts; ``coord_out`` predicts minus our normalised score, so its
  sign flips; their unconditional pass adds nothing, so our null condition is zero; their
  node-level DOS head ``node_out`` is unused by generation and is not imported.
- **Schedules**: abar_t and lambda_t (``sigmas_norm``, their own Monte-Carlo draw) are taken from
  the checkpoint, after checking that they are the cosine / geometric schedules of the
  hyper-parameters.

>>> fourier_columns(3)["sin"]  # F = 3: their sin columns for k >= 1, axis-major (axis * F + k)
[1, 2, 4, 5, 7, 8]
"""

from __future__ import annotations

import collections
import hashlib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dosmatgen.data.standardise import DOSStandardiser
from dosmatgen.dos.grid import N_DOS
from dosmatgen.errors import CheckpointError, ConfigError
from dosmatgen.model.config import DiffusionConfig, ModelConfig
from dosmatgen.model.diffusion import JointDiffusion

#: Where the authors' repository keeps the reference implementation (for provenance).
AUTHORS_REPOSITORY = "https://github.com/Fung-Lab/DOSMatGen"
#: Hyper-parameters of the reference decoder that our CSPNet reproduces; others are refused.
REQUIRED_FLAGS: dict[str, Any] = {"smooth": True, "ip": True, "dis_emb": "sin", "edge_style": "fc",
                                  "act_fn": "silu", "pred_type": True, "cfg": True}
#: Largest relative difference tolerated between the checkpoint's schedule tables and ours before
#: the hyper-parameters are judged not to describe the checkpoint (theirs are float32 cosines:
#: ~2e-4 relative for abar_t; a different schedule is off by orders of magnitude more).
SCHEDULE_RTOL = 1e-2
#: lambda_t is a Monte-Carlo estimate (10,000 draws): a few percent from ours; a factor means
#: other sigmas.
SCORE_NORM_RTOL = 0.2


class _PickledState:
    """Inert stand-in for a class named in a release pickle: keeps the pickled state, runs nothing."""

    def __setstate__(self, state: Any) -> None:
        self.pickled_state = state


class _DictConfig(_PickledState): ...
class _ListConfig(_PickledState): ...
class _ContainerMetadata(_PickledState): ...
class _Metadata(_PickledState): ...
class _AnyNode(_PickledState): ...
class _StandardScalerTorch(_PickledState): ...


#: The allow-list: (stand-in, name in the pickle) plus the builtins the omegaconf pickles use.
_SAFE_GLOBALS: list[Any] = [
    (_DictConfig, "omegaconf.dictconfig.DictConfig"),
    (_ListConfig, "omegaconf.listconfig.ListConfig"),
    (_ContainerMetadata, "omegaconf.base.ContainerMetadata"),
    (_Metadata, "omegaconf.base.Metadata"),
    (_AnyNode, "omegaconf.nodes.AnyNode"),
    (_StandardScalerTorch, "dosmatgen.utils.data.StandardScalerTorch"),
    typing.Any, collections.defaultdict, dict, list, int,
]


def safe_torch_load(path: Path, what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` and only the release's classes allowed."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(exc)
        if "Unsupported global" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            name = found.group(1) if found else "?"
            raise CheckpointError(f"{what} {path} names the class {name}, which is not one the authors' "
                                  "release needs; it is refused (not unpickled) for safety") from exc
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{what} {path} is not a readable PyTorch file ({first[:160]})") from exc


def plain_config(obj: Any) -> Any:
    """An unpickled omegaconf tree (stand-ins) as plain dicts, lists and scalars."""
    if isinstance(obj, _DictConfig):
        content = obj.pickled_state.get("_content", {})
        return {str(k): plain_config(v) for k, v in (content or {}).items()}
    if isinstance(obj, _ListConfig):
        return [plain_config(v) for v in obj.pickled_state.get("_content", []) or []]
    if isinstance(obj, _AnyNode):
        return plain_config(obj.pickled_state.get("_val"))
    if isinstance(obj, dict):
        return {str(k): plain_config(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_config(v) for v in obj]
    return obj


def fourier_columns(num_freqs: int, base: int = 0) -> dict[str, list[int]]:
    """Column indices (from ``base``) of the reference's 6F Fourier features: ``sin``/``cos`` for
    k >= 1 (kept, in our order: axis-major, k ascending) and ``sin0``/``cos0`` for k = 0."""
    f = num_freqs
    sin = [base + a * f + k for a in range(3) for k in range(1, f)]
    cos = [base + 3 * f + a * f + k for a in range(3) for k in range(1, f)]
    return {"sin": sin, "cos": cos, "sin0": [base + a * f for a in range(3)],
            "cos0": [base + 3 * f + a * f for a in range(3)]}


@dataclass
class ReleaseFiles:
    """The files of a release folder."""

    checkpoint: Path
    hparams: Path | None
    prop_scaler: Path
    lattice_scaler: Path | None

    @classmethod
    def find(cls, folder: str | Path) -> "ReleaseFiles":
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"release folder {folder} does not exist or is not a folder")
        ckpts = sorted(folder.glob("*.ckpt"))
        if not ckpts:
            raise CheckpointError(f"release folder {folder} holds no *.ckpt file (the Lightning checkpoint)")
        if len(ckpts) > 1:
            raise CheckpointError(f"release folder {folder} holds {len(ckpts)} *.ckpt files "
                                  f"({', '.join(p.name for p in ckpts)}); keep the one to import")
        scaler = folder / "prop_scaler.pt"
        if not scaler.is_file():
            raise CheckpointError(f"release folder {folder} lacks prop_scaler.pt (the DOS standardiser)")
        hp, lat = folder / "hparams.yaml", folder / "lattice_scaler.pt"
        return cls(ckpts[0], hp if hp.is_file() else None, scaler, lat if lat.is_file() else None)

    def hashes(self) -> dict[str, str]:
        """sha256 of every file (name -> hex digest)."""
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (self.checkpoint, self.hparams, self.prop_scaler, self.lattice_scaler) if p is not None}


@dataclass
class ImportedRelease:
    """The release as our objects: model (eval mode), standardiser, and where it all came from."""

    model: JointDiffusion
    standardiser: DOSStandardiser
    provenance: dict[str, Any] = field(default_factory=dict)


def _section(hp: dict[str, Any], *keys: str) -> dict[str, Any]:
    node: Any = hp
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise CheckpointError(f"release hyper-parameters lack {'.'.join(keys[:keys.index(k) + 1])}")
        node = node[k]
    return node


def configs_from_hparams(hp: dict[str, Any]) -> tuple[ModelConfig, DiffusionConfig]:
    """Our model and diffusion configs from the release's hyper-parameters (``diffusion`` section).

    Our ``num_freqs`` is theirs minus one (their k = 0 is folded into a bias)."""
    diff = _section(hp, "diffusion")
    net = _section(hp, "diffusion", "model")
    wrong = {k: net.get(k) for k, v in REQUIRED_FLAGS.items() if net.get(k) != v}
    if wrong:
        raise CheckpointError(f"release decoder options {wrong} differ from the reference CFG model's "
                              f"{ {k: REQUIRED_FLAGS[k] for k in wrong} }; this architecture cannot be imported")
    mode = _section(hp, "diffusion", "beta_scheduler").get("scheduler_mode")
    if mode != "cosine":
        raise CheckpointError(f"release beta schedule {mode!r} is not 'cosine'; it cannot be imported")
    if net.get("latent_dim") != diff.get("time_dim"):
        raise CheckpointError(f"release decoder latent_dim {net.get('latent_dim')} differs from time_dim "
                              f"{diff.get('time_dim')}; the reference decoder needs them equal")
    if net.get("pred_dim") != N_DOS:
        raise CheckpointError(f"release DOS length pred_dim {net.get('pred_dim')} is not {N_DOS}")
    if not isinstance(net.get("num_freqs"), int) or net["num_freqs"] < 2:
        raise CheckpointError(f"release num_freqs {net.get('num_freqs')!r}: need an integer >= 2")
    sig = _section(hp, "diffusion", "sigma_scheduler")
    try:
        model = ModelConfig(hidden_dim=net["hidden_dim"], num_layers=net["num_layers"],
                            num_freqs=net["num_freqs"] - 1, time_dim=diff["time_dim"],
                            max_z=net["max_atoms"], dos_dim=net["pred_dim"], layer_norm=bool(net.get("ln", False)))
        diffusion = DiffusionConfig(timesteps=diff["timesteps"], sigma_begin=float(sig["sigma_begin"]),
                                    sigma_end=float(sig["sigma_end"]), lambda_A=float(diff["cost_type"]),
                                    lambda_X=float(diff["cost_coord"]), lambda_L=float(diff["cost_lattice"]),
                                    p_uncond=float(net.get("cfg_prob", 0.2)), drop_mode="batch")
    except KeyError as exc:
        raise CheckpointError(f"release hyper-parameters lack {exc.args[0]!r}") from exc
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"release hyper-parameters are not usable: {exc}") from exc
    return model, diffusion


def expected_shapes(m: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The reference state_dict (names and shapes) of a decoder of size ``m`` (our F = theirs - 1)."""
    h, f6, z = m.hidden_dim, 6 * (m.num_freqs + 1), m.max_z
    shapes: dict[str, tuple[int, ...]] = {
        "decoder.node_embedding.weight": (h, z), "decoder.node_embedding.bias": (h,),
        "decoder.atom_latent_emb.weight": (h, h + m.time_dim), "decoder.atom_latent_emb.bias": (h,),
        "decoder.coord_out.weight": (3, h), "decoder.lattice_out.weight": (9, h),
        "decoder.type_out.weight": (z, h), "decoder.type_out.bias": (z,),
        "decoder.node_out.weight": (m.dos_dim, h),
        "decoder.y_projection.weight": (h, m.dos_dim), "decoder.y_projection.bias": (h,),
    }
    if m.layer_norm:
        shapes |= {"decoder.final_layer_norm.weight": (h,), "decoder.final_layer_norm.bias": (h,)}
    for k in range(m.num_layers):
        p = f"decoder.csp_layer_{k}"
        shapes |= {f"{p}.edge_mlp.0.weight": (h, 2 * h + 9 + f6), f"{p}.edge_mlp.0.bias": (h,),
                   f"{p}.edge_mlp.2.weight": (h, h), f"{p}.edge_mlp.2.bias": (h,),
                   f"{p}.node_mlp.0.weight": (h, 2 * h), f"{p}.node_mlp.0.bias": (h,),
                   f"{p}.node_mlp.2.weight": (h, h), f"{p}.node_mlp.2.bias": (h,)}
        if m.layer_norm:
            shapes |= {f"{p}.layer_norm.weight": (h,), f"{p}.layer_norm.bias": (h,)}
    return shapes


SCHEDULE_KEYS = ("beta_scheduler.betas", "beta_scheduler.alphas", "beta_scheduler.alphas_cumprod",
                 "beta_scheduler.sigmas", "sigma_scheduler.sigmas", "sigma_scheduler.sigmas_norm")


def check_state_dict(sd: dict[str, torch.Tensor], m: ModelConfig, timesteps: int) -> None:
    """Raise :class:`CheckpointError` unless ``sd`` has exactly the reference decoder's keys and
    shapes for the hyper-parameters (so a checkpoint of another architecture, or hparams that
    disagree with it, fail here with the first difference named)."""
    shapes = expected_shapes(m) | {k: (timesteps + 1,) for k in SCHEDULE_KEYS}
    missing = sorted(set(shapes) - set(sd))
    extra = sorted(set(sd) - set(shapes))
    if missing or extra:
        parts = ([f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}"] if missing else []) + \
                ([f"unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}"] if extra else [])
        raise CheckpointError("the checkpoint is not the reference CFG model of its hyper-parameters: "
                              + "; ".join(parts))
    for k, shape in shapes.items():
        if tuple(sd[k].shape) != shape:
            raise CheckpointError(f"checkpoint tensor {k} has shape {tuple(sd[k].shape)} but the "
                                  f"hyper-parameters imply {shape}: hparams and weights disagree")


def map_weights(sd: dict[str, torch.Tensor], m: ModelConfig) -> dict[str, torch.Tensor]:
    """Our ``JointDiffusion.state_dict()`` from the reference decoder's (exact; see module doc)."""
    h = m.hidden_dim
    g = lambda k: sd[k].detach().to(torch.float32).clone()  # noqa: E731
    same = {"backbone.type_embedding": "node_embedding", "backbone.dos_projection": "y_projection",
            "backbone.input": "atom_latent_emb", "type_head": "type_out"}
    if m.layer_norm:
        same["backbone.final_norm"] = "final_layer_norm"
    out = {f"net.{ours}.{p}": g(f"decoder.{theirs}.{p}") for ours, theirs in same.items() for p in ("weight", "bias")}
    out |= {"net.backbone.null_condition": torch.zeros(h), "net.coord_head.weight": -g("decoder.coord_out.weight"),
            "net.lattice_head.weight": g("decoder.lattice_out.weight")}
    cols = fourier_columns(m.num_freqs + 1, base=2 * h + 9)
    for k in range(m.num_layers):
        src, dst = f"decoder.csp_layer_{k}", f"net.backbone.layers.{k}"
        w, b = g(f"{src}.edge_mlp.0.weight"), g(f"{src}.edge_mlp.0.bias")
        out[f"{dst}.edge_node.weight"] = torch.cat([w[:, :h], w[:, h:2 * h]], dim=0)
        geometry = list(range(2 * h, 2 * h + 9)) + cols["sin"] + cols["cos"]
        out[f"{dst}.edge_geometry.weight"] = w[:, geometry].contiguous()
        out[f"{dst}.edge_geometry.bias"] = b + w[:, cols["cos0"]].sum(dim=1)
        pairs = [("edge_mlp.1", "edge_mlp.2"), ("node_mlp.0", "node_mlp.0"), ("node_mlp.2", "node_mlp.2")]
        pairs += [("norm", "layer_norm")] if m.layer_norm else []
        out |= {f"{dst}.{ours}.{p}": g(f"{src}.{theirs}.{p}") for ours, theirs in pairs for p in ("weight", "bias")}
    return out


def schedule_tables(sd: dict[str, torch.Tensor], diffusion: DiffusionConfig) -> DiffusionConfig:
    """``diffusion`` with the checkpoint's abar_t and lambda_t tables, after checking that they are
    the schedules its hyper-parameters describe."""
    from dosmatgen.model.schedules import DiffusionSchedule

    ours = DiffusionSchedule(diffusion)
    theirs = {"abar": sd["beta_scheduler.alphas_cumprod"].double(), "sigma": sd["sigma_scheduler.sigmas"].double(),
              "norm": sd["sigma_scheduler.sigmas_norm"].double()}
    if not torch.all(torch.isfinite(torch.stack(list(theirs.values())))):
        raise CheckpointError("the checkpoint's schedule tables hold NaN or infinite values")
    checks = (("alphas_cumprod", theirs["abar"], ours.alphas_cumprod, SCHEDULE_RTOL),
              ("sigmas", theirs["sigma"][1:], ours.sigma_x[1:], SCHEDULE_RTOL),
              ("sigmas_norm", theirs["norm"][1:], ours.score_norm[1:], SCORE_NORM_RTOL))
    for name, a, b, rtol in checks:
        rel = float(((a - b.double()).abs() / b.double().abs().clamp_min(1e-12)).max())
        if rel > rtol:
            raise CheckpointError(f"the checkpoint's {name} table differs from the schedule of its "
                                  f"hyper-parameters by {rel:.2g} (relative): hparams and weights disagree")
    return DiffusionConfig.from_dict(diffusion.to_dict() | {
        "alphas_cumprod_table": theirs["abar"].tolist(), "score_norm_table": theirs["norm"][1:].tolist()})


def read_scaler(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(means, stds) of a release scaler file, both float64 of length ``dim``."""
    obj = safe_torch_load(path, "scaler file")
    state = obj.pickled_state if isinstance(obj, _StandardScalerTorch) else None
    if not isinstance(state, dict) or "means" not in state or "stds" not in state:
        raise CheckpointError(f"{path} is not the authors' StandardScalerTorch (no means / stds)")
    means = np.asarray(torch.as_tensor(state["means"]).double().reshape(-1))
    stds = np.asarray(torch.as_tensor(state["stds"]).double().reshape(-1))
    if means.shape != (dim,) or stds.shape != (dim,):
        raise CheckpointError(f"{path} holds {means.shape[0]} means and {stds.shape[0]} stds; "
                              f"the model's DOS has {dim} bins")
    if not (np.all(np.isfinite(means)) and np.all(np.isfinite(stds)) and np.all(stds > 0)):
        raise CheckpointError(f"{path} holds non-finite means or non-positive stds")
    return means, stds


def read_hparams_yaml(path: Path) -> dict[str, Any]:
    try:
        hp = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(hp, dict):
        raise CheckpointError(f"{path} is not a YAML mapping of hyper-parameters")
    return hp


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}{k}"
            d = _first_difference(a[k], b[k], f"{path}{k}.")
            if d:
                return d
        return None
    return None if a == b else path.rstrip(".")


def import_release(folder: str | Path, authors_commit: str | None = None) -> ImportedRelease:
    """Read a release folder into our model and standardiser (see the module docstring).

    Sizes come from the checkpoint's ``hyper_parameters`` (or ``hparams.yaml`` when the checkpoint
    has none); when both exist, their ``diffusion`` sections must agree."""
    files = ReleaseFiles.find(folder)
    ckpt = safe_torch_load(files.checkpoint, "checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{files.checkpoint} is not a Lightning checkpoint (no state_dict)")
    hp_ckpt = plain_config(ckpt.get("hyper_parameters")) if ckpt.get("hyper_parameters") is not None else None
    hp_yaml = read_hparams_yaml(files.hparams) if files.hparams else None
    hp = hp_ckpt if hp_ckpt is not None else hp_yaml
    if hp is None:
        raise CheckpointError(f"{files.checkpoint} holds no hyper_parameters and the folder has no hparams.yaml")
    if hp_ckpt is not None and hp_yaml is not None:
        diff = _first_difference(hp_ckpt.get("diffusion"), hp_yaml.get("diffusion"), "diffusion.")
        if diff:
            raise CheckpointError(f"hparams.yaml and the checkpoint's hyper_parameters disagree at {diff}")
    model_cfg, diffusion_cfg = configs_from_hparams(hp)
    sd = {str(k): v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    check_state_dict(sd, model_cfg, diffusion_cfg.timesteps)
    diffusion_cfg = schedule_tables(sd, diffusion_cfg)
    model = JointDiffusion(model_cfg, diffusion_cfg)
    model.load_state_dict(map_weights(sd, model_cfg), strict=True)
    model.eval()
    means, stds = read_scaler(files.prop_scaler, model_cfg.dos_dim)
    provenance = {
        "source": "authors' release", "repository": AUTHORS_REPOSITORY, "authors_commit": authors_commit,
        "release_folder": str(Path(folder).resolve()), "sha256": files.hashes(),
        "checkpoint_epoch": ckpt.get("epoch"), "checkpoint_global_step": ckpt.get("global_step"),
        "pytorch_lightning_version": ckpt.get("pytorch-lightning_version"),
        "hyper_parameters": hp,
        "mapping": {"num_freqs": f"ours {model_cfg.num_freqs} = theirs {model_cfg.num_freqs + 1} - 1 "
                                 "(k = 0 folded into the edge MLP bias)",
                    "coord_out": "sign flipped (theirs predicts minus the normalised score)",
                    "null_condition": "zero (their unconditional pass adds nothing)",
                    "not_imported": ["decoder.node_out (node-level DOS head, unused by generation)",
                                     "lattice_scaler.pt (unused by the CFG model)"],
                    "schedule": "alphas_cumprod and sigmas_norm taken from the checkpoint"},
    }
    return ImportedRelease(model, DOSStandardiser(means, stds), provenance)
