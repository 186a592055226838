"""The sampler's settings: the one place a generation default is written.

:class:`SamplerOptions` carries every knob of the reverse process (paper §2.3-2.4, Appendix A)
from whoever asks for crystals (``evaluate regenerate``, the studies, ``dosmatgen sample``,
``bench``, ``plan``, the Python API) to :func:`dosmatgen.generate.runner.generate`. Callers pass
the whole value on, so a new field reaches all of them without editing any; the command line's
flags are made from the fields' metadata (:func:`dosmatgen.commands.arguments.add_sampler_options`)
and the run config's ``generate`` defaults are checked against them (``tests/test_defaults.py``).

>>> SamplerOptions().steps_from(200, 1000) is None        # every timestep
True
>>> SamplerOptions(steps=200).steps_from(200, 1000)       # the same stride as 200 steps from T
40
>>> SamplerOptions(steps=200).steps_from(202, 1000)       # never coarser than that stride
41
>>> SamplerOptions(omega=2.0).replace(seed=3).seed, SamplerOptions(omega=2.0).replace(seed=3).omega
(3, 2.0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dosmatgen.errors import ConfigError

#: How the reverse process is steered: classifier-free guidance (§2.4), classifier guidance with a
#: time-dependent regressor (§2.3), or the unconditional model alone (a baseline: CFG at ω = -1).
GUIDANCE_MODES: tuple[str, ...] = ("cfg", "classifier", "uncond")
#: The CFG weight at which classifier-free guidance is the unconditional model.
UNCOND_OMEGA: float = -1.0
#: Largest guidance weight (omega, omega_geometry, guidance_scale). The paper uses omega = 1 and
#: scales up to 1; at 100 the guided score is a hundredfold difference of two predictions, and at
#: 1e300 it overflows to NaN coordinates.
MAX_GUIDANCE_WEIGHT: float = 100.0
#: What the predictor evaluates the network on (:func:`dosmatgen.generate.sampler.sample`).
PREDICTOR_INPUTS: tuple[str, ...] = ("corrected", "pre_corrector")


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field whose metadata also describes its command-line flag."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class SamplerOptions:
    """Every setting of one generation run; each field's ``help`` (its command-line flag's help,
    ``dataclasses.fields(SamplerOptions)``) says what it does. Defaults: the paper's sampler (§2.4,
    Appendix A; DiffCSP's predictor-corrector) unless a help says otherwise.
    """

    guidance: str = _opt("cfg", "cfg: classifier-free guidance; classifier: unconditional model + regressor "
                                "gradient (needs --regressor); uncond: the unconditional model alone (CFG at "
                                "omega = -1, a baseline that never sees the DOS)", choices=GUIDANCE_MODES)
    omega: float = _opt(1.0, "classifier-free guidance weight omega (paper: 1)", kind="non_negative")
    omega_geometry: float | None = _opt(None, "a separate CFG weight for coordinates and lattice, --omega then "
                                              "weighting the types alone (default: --omega on all three, the "
                                              "paper); 0 leaves the geometry to the conditional model",
                                        kind="non_negative")
    guidance_scale: float = _opt(1.0, "classifier-guidance gradient scale (the demo profile uses 0.03)",
                                 kind="non_negative")
    steps: int | None = _opt(None, "reverse steps for a start at T, evenly strided; a start at t0 takes "
                                   "ceil(steps*t0/T) (the same stride). Default: every timestep", kind="positive_int")
    step_lr: float = _opt(1e-5, "Langevin corrector step scale (0 = no corrector; the authors' generation "
                                "scripts: 5e-6)", kind="non_negative")
    start_at_T: bool = _opt(False, "a chain from the prior starts at t = T as in the reference code (default: "
                                   "at T - 1, see dosmatgen.generate.sampler.sample)", kind="flag")
    predictor_input: str = _opt("corrected", "corrected (DiffCSP): the predictor re-evaluates the network after "
                                             "the corrector; pre_corrector: it reuses the pre-corrector output, "
                                             "as the authors' cfg_sample does", choices=PREDICTOR_INPUTS)
    repel_distance: float | None = _opt(None, "an option, not the paper's sampler: after each reverse step, push "
                                              "apart atoms of one crystal closer than this many angstrom (e.g. "
                                              "1.0). Default: off", kind="positive")
    repel_until: int = _opt(200, "with --repel-distance: push only while the chain's time is >= this (0 = to "
                                 "the end)", kind="int")
    tie_equal_sites: float | None = _opt(None, "an option, not the paper's sampler: atoms of one crystal whose "
                                               "conditioning DOS (standardised) differ by a mean absolute difference "
                                               "below this share one type vector along the reverse chain, so they "
                                               "come out as one element (e.g. 0.05). Default: off",
                                         kind="non_negative")
    type_temperature: float = _opt(1.0, "an option, not the paper's sampler: scale of the noise the reverse "
                                        "step adds to the type channel (A4); below 1 each atom leans to its "
                                        "most probable element, 0 adds none. Default: 1, the paper's ancestral "
                                        "step", kind="non_negative")
    geometry_temperature: float = _opt(1.0, "an option, not the paper's sampler: scale of the noise the reverse "
                                            "predictor step adds to the lattice (A2-A3) and the coordinates (the "
                                            "variance-exploding step); below 1 the cell and the sites lean to "
                                            "their most probable values, 0 adds none (the corrector keeps its "
                                            "noise). Default: 1, the paper's step", kind="non_negative")
    allowed_types: tuple[int, ...] | None = _opt(None, "elements the generated atoms may take, e.g. Ni,O,28 "
                                                       "(default: every element the model knows)",
                                                 kind="elements")
    batch_size: int = _opt(100, "crystals per sampler call; chunk k uses seed + k", kind="positive_int")
    seed: int = _opt(0, "base seed of the sampler noise", kind="non_negative_int")

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse a setting the sampler cannot honour, naming it (one line)."""
        if self.guidance not in GUIDANCE_MODES:
            raise ConfigError(f"unknown guidance {self.guidance!r}; choose one of {GUIDANCE_MODES}")
        for name in ("omega", "guidance_scale", "step_lr", "omega_geometry"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
            if name != "step_lr" and value is not None and value > MAX_GUIDANCE_WEIGHT:
                raise ConfigError(f"{name} {value:g} is above MAX_GUIDANCE_WEIGHT = {MAX_GUIDANCE_WEIGHT:g} "
                                  "(the paper's omega is 1); larger weights overflow the guided score")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1 (or None for every timestep), got {self.steps}")
        if self.predictor_input not in PREDICTOR_INPUTS:
            raise ConfigError(f"predictor_input must be one of {PREDICTOR_INPUTS}, got {self.predictor_input!r}")
        self.repulsion()  # the pair repulsion checks its own distance and time
        if self.tie_equal_sites is not None and not (math.isfinite(self.tie_equal_sites) and self.tie_equal_sites >= 0):
            raise ConfigError(f"tie_equal_sites must be a finite number >= 0, got {self.tie_equal_sites}")
        for name in ("type_temperature", "geometry_temperature"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.allowed_types is not None and not self.allowed_types:
            raise ConfigError("allowed_types is empty: no element could be generated")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def replace(self, **changes: Any) -> "SamplerOptions":
        """A copy with ``changes`` (checked)."""
        return dataclasses.replace(self, **changes)

    def steps_from(self, t0: int | None, timesteps: int) -> int | None:
        """Reverse steps for a start at ``t0`` (None: at T) with the stride of :attr:`steps` from T:
        ``ceil(steps * t0 / T)``, so a later start is never sampled more coarsely; None = every
        timestep. The one rule for every caller."""
        if self.steps is None:
            return None
        start = timesteps if t0 is None else int(t0)
        return max(1, min(start, math.ceil(self.steps * start / timesteps)))

    def repulsion(self):
        """The :class:`~dosmatgen.generate.repulsion.PairRepulsion` these options ask for, or None
        (``repel_until`` is only checked when the repulsion is on)."""
        if self.repel_distance is None:
            return None
        from dosmatgen.generate.repulsion import PairRepulsion

        return PairRepulsion(self.repel_distance, self.repel_until)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        out = dataclasses.asdict(self)
        if out["allowed_types"] is not None:
            out["allowed_types"] = list(out["allowed_types"])
        return out

    def describe(self) -> str:
        """The guidance as a summary line shows it.

        >>> SamplerOptions(omega=1.0).describe(), SamplerOptions(omega_geometry=0.0).describe()
        ('CFG omega=1.0', 'CFG omega=1.0, omega_geometry=0.0')
        """
        if self.guidance == "classifier":
            return f"classifier guidance, scale={self.guidance_scale}"
        if self.guidance == "uncond":
            return "unconditional model (CFG omega=-1)"
        geometry = "" if self.omega_geometry is None else f", omega_geometry={self.omega_geometry}"
        return f"CFG omega={self.omega}{geometry}"
