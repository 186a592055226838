"""Run configs of the Snakemake workflow (``config/{ci,demo,paper}.yaml``): load, validate, resolve.

A run config holds every number of one workflow run (dataset, model size, epochs, the paper's
T ∈ {200, 500, 1000}, ω, study sizes, seeds). :func:`validate_run_config` checks it against
``workflow/schemas/config.schema.yaml`` (JSON Schema) plus a few cross-key rules *before* the
workflow builds its job graph, so a typo stops the run at once with one line naming the key::

    config/ci.yaml: train.diffusion.epochs: 0 is less than the minimum of 1
    config/ci.yaml: train.diffusion.epoch: unknown key (allowed: batch_size, epochs, lr, patience)

It also fills the schema's defaults and resolves derived values (``outputs.work``, the data
source for ``source: auto``), so the Snakefile reads one complete dict.

>>> cfg = load_run_config(DEFAULT_CONFIG.parent / "ci.yaml")
>>> cfg["profile"], cfg["outputs"]["work"]
('ci', 'work/ci')
>>> cli_flags({"limit": 3, "t0": [200, 500], "dft": True, "skip": None, "quiet": False})
'--limit 3 --t0 200 500 --dft'
"""

from __future__ import annotations

import copy
import math
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dosmatgen.errors import ConfigError
from dosmatgen.paths import REPO_ROOT

#: The repository root when the package runs from a checkout (editable install).
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "demo.yaml"
#: Studies the workflow knows, and the ``dosmatgen studies`` sub-command of each.
STUDIES = ("masked", "template", "fixed-type", "screen", "window-sweep")


def load_schema(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read the JSON Schema (YAML syntax) of run configs."""
    path = Path(path) if path is not None else SCHEMA_PATH
    if not path.exists():
        raise ConfigError(f"config schema {path} not found (pass schema_path=)")
    with open(path) as f:
        return yaml.safe_load(f)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain YAML
    keeps the last one silently)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class names it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML file ``path`` parsed; :class:`ConfigError` in one line when it is missing, not
    UTF-8 text, not valid YAML, or gives a key twice."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found" if not path.exists() else f"config file {path} is not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise ConfigError(f"{path}: not valid YAML: {what}{where}") from None


def load_run_config(path: str | os.PathLike, *, schema_path: str | os.PathLike | None = None,
                    environ: Mapping[str, str] | None = None, check_files: bool = False) -> dict[str, Any]:
    """Read a YAML run config (:func:`read_yaml`) and return it validated, with defaults and
    derived values filled."""
    return validate_run_config(read_yaml(path), source=str(Path(path)), schema_path=schema_path, environ=environ,
                               check_files=check_files)


def validate_run_config(config: Any, *, source: str = "config", schema_path: str | os.PathLike | None = None,
                        environ: Mapping[str, str] | None = None, check_files: bool = False) -> dict[str, Any]:
    """Validate ``config`` (a parsed run config) and return a completed deep copy.

    Raises :class:`ConfigError` whose message starts with ``source`` and lists every problem as
    ``dotted.key: what is wrong``. ``environ`` (default ``os.environ``) decides ``data.source:
    auto``; ``check_files`` also demands that the built-in store exists when it will be used.
    """
    import jsonschema

    schema = load_schema(schema_path)
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: a run config must be a mapping of keys, got {type(config).__name__}")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        raise ConfigError(_format(source, [_describe(e) for e in errors]))
    cfg = copy.deepcopy(config)
    _fill_defaults(cfg, schema, schema)
    problems = _cross_checks(cfg)
    if problems:
        raise ConfigError(_format(source, problems))
    _resolve(cfg, os.environ if environ is None else environ, source)
    if check_files and cfg["data"]["source"] == "builtin" and not Path(cfg["data"]["builtin_store"]).exists():
        raise ConfigError(f"{source}: data.builtin_store: {cfg['data']['builtin_store']} does not exist "
                          "(run from the repository root, or rebuild it with `python -m dev_scripts.builtin build`)")
    return cfg


def work_dir(config: Mapping[str, Any]) -> str:
    """Folder of a run's intermediate products (``outputs.work`` or ``work/<profile>``)."""
    return config["outputs"].get("work") or f"work/{config['profile']}"


def cli_flags(options: Mapping[str, Any]) -> str:
    """Render ``{"t0": [200, 500], "dft": True, "x": None}`` as ``--t0 200 500 --dft`` (shell-quoted).

    ``None`` and ``False`` drop the flag, ``True`` gives a bare switch, a list gives several
    values; underscores in keys become dashes.
    """
    parts: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(flag + " " + " ".join(shlex.quote(_scalar(v)) for v in value))
        else:
            parts.append(f"{flag} {shlex.quote(_scalar(value))}")
    return " ".join(parts)


def _scalar(value: Any) -> str:
    if isinstance(value, (list, tuple)):  # a pair such as an energy window: "-2:2"
        return ":".join(_scalar(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------------------- helpers
def _dotted(path: Any) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _describe(error: Any) -> str:
    """One line per schema violation, naming the key (``a.b.c``) and what is wrong."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return "; ".join(f"{_dotted(where + [k])}: unknown key (allowed: {', '.join(allowed)})" for k in extra)
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        return "; ".join(f"{_dotted(where + [k])}: missing required key" for k in missing)
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    hint = f" ({description})" if description and error.validator in ("enum", "type", "pattern") else ""
    return f"{_dotted(where)}: {error.message}{hint}"


def _format(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems:\n  " + "\n  ".join(problems)


def _deref(node: Any, root: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ConfigError(f"config schema: only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _fill_defaults(instance: Any, schema: Any, root: dict[str, Any]) -> None:
    """Insert the schema's ``default:`` for every absent key, recursively (objects only)."""
    schema = _deref(schema, root)
    if not isinstance(instance, dict) or not isinstance(schema, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        sub = _deref(sub, root)
        if key not in instance and isinstance(sub, dict) and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)


def _cross_checks(cfg: dict[str, Any]) -> list[str]:
    """Rules JSON Schema cannot say simply."""
    problems = []
    fractions = cfg["data"]["split"]
    if abs(sum(fractions) - 1.0) > 1e-6:
        problems.append(f"data.split: fractions {fractions} must sum to 1 (got {sum(fractions):.6g})")
    for name in cfg["studies"]["run"]:
        if name not in cfg["studies"]:
            problems.append(f"studies.{name}: listed in studies.run but has no settings section")
    problems += [f"{key}: {value!r} is not a finite number" for key, value in _non_finite(cfg)]
    fixed = cfg["studies"].get("fixed-type")
    if fixed:
        from ase.data import chemical_symbols  # ASE, not pymatgen: a GPU host may lack pymatgen

        for symbol in fixed.get("elements", []):
            if str(symbol) not in chemical_symbols[1:]:  # [0] is ASE's placeholder 'X'
                problems.append(f"studies.fixed-type.elements: {symbol!r} is not an element symbol")
    sweep = cfg["studies"].get("window-sweep")
    for window in (sweep or {}).get("windows", []):
        if len(window) == 2 and not window[0] < window[1]:
            problems.append(f"studies.window-sweep.windows: {list(window)} must be [low, high] with low < high (eV)")
    if cfg["data"]["source"] == "authors":
        if "authors" not in cfg:
            problems.append("data.source: 'authors' needs an `authors` section (release and data folders)")
        else:
            for key in ("release", "data"):
                if not Path(cfg["authors"][key]).is_dir():
                    problems.append(f"authors.{key}: {cfg['authors'][key]} is not a folder")
    problems += _output_problems(cfg["outputs"])
    screen = cfg["studies"].get("screen")
    if screen and screen["top_k"] > screen["n_per_natoms"] * len(screen["natoms"]):
        problems.append("studies.screen.top_k: larger than the number of candidates "
                        f"({screen['n_per_natoms']} x {len(screen['natoms'])})")
    return problems


def _output_problems(outputs: Mapping[str, Any]) -> list[str]:
    """An output folder that is the filesystem root, the home folder or the repository root: a
    run writes (and replaces) files there among the user's own."""
    shared = {os.path.realpath(os.sep): "the filesystem root", os.path.realpath(Path.home()): "the home folder",
              os.path.realpath(REPO_ROOT): "the repository root"}
    return [f"outputs.{key}: {value} is {shared[real]}; give a folder of its own (e.g. results/<profile>)"
            for key, value in outputs.items() if isinstance(value, str) and value
            and (real := os.path.realpath(os.path.expanduser(value))) in shared]


def _non_finite(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every NaN or infinite number in a parsed config."""
    if isinstance(node, dict):
        return [hit for k, v in node.items() for hit in _non_finite(v, f"{key}.{k}" if key else str(k))]
    if isinstance(node, list):
        return [hit for i, v in enumerate(node) for hit in _non_finite(v, f"{key}[{i}]")]
    if isinstance(node, float) and not math.isfinite(node):
        return [(key, node)]
    return []


def _resolve(cfg: dict[str, Any], environ: Mapping[str, str], source: str) -> None:
    cfg["outputs"]["work"] = work_dir(cfg)
    data = cfg["data"]
    has_key = bool(environ.get("MP_API_KEY"))
    if data["source"] == "auto":
        data["source"] = "mp" if has_key else "builtin"
    elif data["source"] == "mp" and not has_key:
        raise ConfigError(f"{source}: data.source: 'mp' needs the environment variable MP_API_KEY "
                          "(or use source: auto to fall back to the built-in dataset)")


def run_provenance(config: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of a workflow run: the validated config, code and library versions, the host,
    and size + SHA-256 of each input file (``inputs``: name -> path or list of paths)."""
    import datetime as dt
    import hashlib
    import importlib.metadata as md
    import platform

    from dosmatgen import __version__
    from dosmatgen.checkpoint import git_commit

    def file_info(path: str) -> dict[str, Any]:
        p = Path(path)
        if not p.is_file():
            return {"path": str(path), "exists": False}
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return {"path": str(path), "bytes": p.stat().st_size, "sha256": digest.hexdigest()}

    versions = {}
    for package in ("torch", "numpy", "pymatgen", "ase", "snakemake", "sevenn"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    files = {name: file_info(str(v)) if isinstance(v, (str, os.PathLike)) else [file_info(str(p)) for p in v]
             for name, v in (inputs or {}).items()}
    return {"profile": config.get("profile"), "description": config.get("description", ""),
            "data_source": config.get("data", {}).get("source"), "device": config.get("device"),
            "dosmatgen": __version__, "git": git_commit(), "python": platform.python_version(),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()}, "versions": versions,
            "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": dict(config), "inputs": files}


def write_provenance(path: str | os.PathLike, config: Mapping[str, Any],
                     inputs: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`run_provenance` as JSON to ``path`` (atomically)."""
    from dosmatgen.io import atomic_save_json

    atomic_save_json(path, run_provenance(config, inputs))
    return Path(path)

