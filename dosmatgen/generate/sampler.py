"""Predictor-corrector sampling of crystals (DiffCSP's sampler; paper §3, Appendix A).

One reverse step t -> s (s < t; s = t - 1 without striding):

- corrector (X only): Langevin step X += gamma score_X + sqrt(2 gamma) z with
  gamma = step_lr (sigma_t / sigma_1)^2;
- predictor, X: reverse variance-exploding step X += (sigma_t^2 - sigma_s^2) score_X
  + sqrt(sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2) z (mod 1);
- predictor, A and L: DDPM ancestral step (A2-A4, A7) with alpha_{t|s} = abar_t / abar_s,
  mean (Y - (1 - alpha_{t|s}) / sqrt(1 - abar_t) eps) / sqrt(alpha_{t|s}) and variance
  (1 - alpha_{t|s}) (1 - abar_s) / (1 - abar_t).

Generation modes: from the prior at T (``t0=None``) or from the spec's structure
noised to ``t0`` with the forward processes; per-atom conditions (``spec.cond_mask``); fixed types
(``spec.fixed_mask``: those atoms' type vectors are reset to their one-hot, noised to the current
timestep, at every step, and equal it exactly at the end). Final types are argmax + 1. A
left-handed lattice is flipped to L -> -L, X -> -X (the same crystal).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from dosmatgen.errors import ConfigError, DataError
from dosmatgen.generate.guidance import ClassifierFreeGuidance, Guidance
from dosmatgen.generate.options import PREDICTOR_INPUTS, SamplerOptions
from dosmatgen.generate.repulsion import PairRepulsion
from dosmatgen.model.batch import CrystalBatch, NoisyBatch
from dosmatgen.model.diffusion import JointDiffusion
from dosmatgen.progress import bar as progress_bar


#: Keyword defaults of :func:`sample` are read from the one table of sampler defaults.
DEFAULTS = SamplerOptions()


def timestep_schedule(t_start: int, steps: int | None = None) -> list[int]:
    """``steps + 1`` integer times from ``t_start`` down to 0, evenly strided (``steps=None``:
    every timestep)."""
    if steps is None:
        steps = t_start
    if not 1 <= steps <= t_start:
        raise ConfigError(f"number of sampling steps must be in 1..{t_start} (the starting timestep), got {steps}")
    return [t_start - (k * t_start) // steps for k in range(steps + 1)]


@torch.no_grad()
def sample(diffusion: JointDiffusion, spec: CrystalBatch, *, guidance: Guidance | None = None,
           t0: int | None = None, steps: int | None = None, step_lr: float = DEFAULTS.step_lr,
           seed: int = DEFAULTS.seed, progress: bool | None = True, start_at_T: bool = DEFAULTS.start_at_T,
           predictor_input: str = DEFAULTS.predictor_input,
           allowed_types: Sequence[int] | None = None, repulsion: PairRepulsion | None = None,
           tie_groups: Sequence[int] | None = None, type_temperature: float = DEFAULTS.type_temperature,
           geometry_temperature: float = DEFAULTS.geometry_temperature) -> CrystalBatch:
    """Generate one crystal per crystal of ``spec`` (its atom counts, DOS, masks; with ``t0`` also
    its structure as the starting point).

    Args:
        diffusion: trained :class:`JointDiffusion`.
        spec: what to generate (see :meth:`CrystalBatch.for_generation` / ``from_records``).
        guidance: default classifier-free guidance with the default omega.
        t0: None: start from the prior at T; else noise the spec's structure to t0 and denoise.
        steps: number of reverse steps, evenly strided; None = all. Capped at the number of
            timesteps the chain spans.
        step_lr: Langevin corrector step scale (0 disables the corrector).
        seed: all noise comes from one generator seeded with this: same seed, same output.
        progress: show a tqdm bar (False: progress lines, None: nothing).
        start_at_T: a chain that starts at T (from the prior, or ``t0 = T``) really starts at
            T - 1 unless this is True. The clipped cosine schedule has beta_T = 0.9999 and
            abar_T = 2.4e-10: S_T holds no information, and the step T -> T-1 divides by
            sqrt(alpha_T) = 0.01, amplifying any error of eps_L, eps_A 100-fold (every other step
            amplifies by <= 1.5). q(S_{T-1} | S_0) equals the prior to within abar_{T-1} = 2.4e-6,
            so drawing S_{T-1} from the prior is the same chain for an exact model and avoids the
            blow-up for a finite one. True reproduces the reference sampler.
        predictor_input: ``"corrected"`` (DiffCSP's ``sample`` and the authors' ``sample`` and
            ``masked_cfg_sample``): the predictor evaluates the network again on the coordinates
            the corrector moved. ``"pre_corrector"`` (the authors' ``cfg_sample``, which made the
            paper's CFG results): the predictor reuses the network output at the state before
            the corrector step (one network evaluation per step instead of two).
        allowed_types: atomic numbers the decoded types may take (e.g. the elements of the
            training data); None allows all 1..max_z. The type channel is a continuous one-hot
            (A4), so this restricts the final argmax to the allowed vertices. Fixed types are
            kept as given.
        repulsion: an option, not the paper's sampler: after each reverse step t -> s with
            ``repulsion.active(s)``, atoms of one crystal closer than ``repulsion.distance`` Å
            (current lattice) are pushed apart (:class:`~dosmatgen.generate.repulsion.PairRepulsion`).
        tie_groups: an option, not the paper's sampler: (M,) group id per atom; atoms with one id
            share one type vector along the chain (the predictor's mean is averaged over the group
            and one noise draw serves the group), so they decode to one element
            (:func:`dosmatgen.generate.specs.tie_groups`). None: every atom on its own.
        type_temperature: an option, not the paper's sampler: the noise of the ancestral step on
            the types (A4) is scaled by this; 1 is the paper's step, below 1 the chain leans
            towards each atom's most probable element, 0 follows the posterior mean. The noise
            is drawn all the same, so every other channel sees the same random numbers.
        geometry_temperature: an option, not the paper's sampler: the same for the predictor's noise
            on the lattice (A2-A3) and the coordinates (the variance-exploding step); 0 follows each
            step's mean. The corrector's Langevin noise is unchanged.
    Returns a :class:`CrystalBatch` on ``spec``'s device with the generated types, coordinates and
    lattices, and ``spec``'s DOS, masks and ids.
    """
    guidance = guidance if guidance is not None else ClassifierFreeGuidance(DEFAULTS.omega)
    T = diffusion.schedule.timesteps
    t_start = _check(diffusion, spec, t0, step_lr, predictor_input, steps, allowed_types, type_temperature,
                     geometry_temperature)
    if t_start == T and not start_at_T:
        t_start = T - 1
    times = timestep_schedule(t_start, None if steps is None else min(int(steps), t_start))
    out_device = spec.device
    spec = spec.to(next(diffusion.parameters()).device)
    chain = _Chain(diffusion, spec, torch.Generator(device=spec.device).manual_seed(int(seed)), tie_groups,
                   type_temperature, geometry_temperature)
    state = chain.start(t0, t_start)
    bar = progress_bar(bool(progress), total=len(times) - 1, desc="sampling", unit="steps", disable=progress is None,
                       leave=False)
    for t, s in zip(times[:-1], times[1:]):
        state = chain.step(state, t, s, guidance, step_lr, predictor_input, repulsion)
        bar.update(1)
    bar.close()
    return chain.decode(state, allowed_types).to(out_device)


def _check(diffusion: JointDiffusion, spec: CrystalBatch, t0: int | None, step_lr: float, predictor_input: str,
           steps: int | None, allowed_types: Sequence[int] | None, type_temperature: float,
           geometry_temperature: float) -> int:
    """Refuse arguments the chain cannot run with; return the starting timestep (T or ``t0``)."""
    T = diffusion.schedule.timesteps
    t_start = T if t0 is None else int(t0)
    if not 1 <= t_start <= T:
        raise ConfigError(f"t0 must be in 1..{T}, got {t0}")
    if step_lr < 0:
        raise ConfigError(f"step_lr must be >= 0, got {step_lr}")
    for name, value in (("type_temperature", type_temperature), ("geometry_temperature", geometry_temperature)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    if predictor_input not in PREDICTOR_INPUTS:
        raise ConfigError(f"predictor_input must be one of {PREDICTOR_INPUTS}, got {predictor_input!r}")
    if steps is not None and steps < 1:
        raise ConfigError(f"number of sampling steps must be >= 1, got {steps}")
    max_z = diffusion.model_cfg.max_z
    if allowed_types is not None:
        allowed = sorted({int(z) for z in allowed_types})
        if not allowed or allowed[0] < 1 or allowed[-1] > max_z:
            raise ConfigError(f"allowed_types must be a non-empty set of atomic numbers in 1..{max_z}")
    if spec.num_graphs == 0:
        raise DataError("the generation spec holds zero crystals")
    if bool(((spec.atom_types < 1) | (spec.atom_types > max_z))[spec.fixed_mask].any()):
        raise DataError(f"fixed atom types must be atomic numbers 1..{max_z}")
    return t_start


class _Chain:
    """One reverse chain over the crystals of ``spec`` with all noise from ``gen`` (in a fixed
    order: same seed, same crystals)."""

    def __init__(self, diffusion: JointDiffusion, spec: CrystalBatch, gen: torch.Generator,
                 tie_groups: Sequence[int] | None, type_temperature: float, geometry_temperature: float):
        self.diffusion, self.spec, self.gen = diffusion, spec, gen
        self.type_temperature = float(type_temperature)
        self.geometry_temperature = float(geometry_temperature)
        self.groups = None if tie_groups is None else torch.as_tensor(tie_groups, dtype=torch.long, device=spec.device)
        if self.groups is not None:  # group count and sizes, once per chain
            self.n_groups = int(self.groups.max()) + 1
            self.group_size = torch.bincount(self.groups, minlength=self.n_groups).to(spec.frac_coords.dtype)
        self.sched = diffusion.schedule
        self.max_z = diffusion.model_cfg.max_z
        self.dtype = spec.frac_coords.dtype
        self.onehot = F.one_hot((spec.atom_types - 1).clamp(0, self.max_z - 1), self.max_z).to(self.dtype)
        self.sigma = self.sched.sigma_x.to(self.dtype)
        self.abar = self.sched.alphas_cumprod.to(self.dtype)
        self.lattice_factor = self.sched.lattice_factor(spec.num_atoms, self.dtype)  # diffused channel -> Å

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, device=self.spec.device, dtype=self.dtype)

    def type_noise(self) -> torch.Tensor:
        """(M, max_z) standard normal noise for the type channel, one draw per tied group."""
        m = self.spec.num_nodes
        if self.groups is None:
            return self.randn((m, self.max_z))
        return self.randn((self.n_groups, self.max_z))[self.groups]

    def tie(self, a: torch.Tensor) -> torch.Tensor:
        """Each tied group's type vectors replaced by their mean."""
        if self.groups is None:
            return a
        total = torch.zeros((self.n_groups, a.shape[1]), dtype=a.dtype, device=a.device).index_add(0, self.groups, a)
        return (total / self.group_size.unsqueeze(-1))[self.groups]

    def clamp_fixed(self, a: torch.Tensor, t: int) -> torch.Tensor:
        """Fixed atoms' type vectors reset to their one-hot noised to ``t`` (exact at t = 0)."""
        if not bool(self.spec.fixed_mask.any()):
            return a
        abar = self.abar[t]
        noised = abar.sqrt() * self.onehot + ((1 - abar).sqrt() * self.randn(tuple(a.shape)) if t > 0 else 0.0)
        return torch.where(self.spec.fixed_mask.unsqueeze(-1), noised, a)

    def start(self, t0: int | None, t_start: int) -> NoisyBatch:
        """The prior (N(0, I) for L and A, U(0, 1) for X) or the spec's structure noised to ``t_start``."""
        spec, b, m = self.spec, self.spec.num_graphs, self.spec.num_nodes
        if t0 is None:
            lat = self.randn((b, 3, 3))
            x = torch.rand((m, 3), generator=self.gen, device=spec.device, dtype=self.dtype)
            a = self.type_noise()
        else:
            times = torch.full((b,), t_start, dtype=torch.long, device=spec.device)
            start, _ = self.sched.noise(spec, times, self.gen, self.max_z)
            lat, x, a = start.lattices, start.frac_coords, self.tie(start.types)
        return NoisyBatch(self.clamp_fixed(a, t_start), x, lat, spec.num_atoms, spec.batch, spec.dos, spec.cond_mask)

    def step(self, state: NoisyBatch, t: int, s: int, guidance: Guidance, step_lr: float, predictor_input: str,
             repulsion: PairRepulsion | None) -> NoisyBatch:
        """One reverse step t -> s: the Langevin corrector on X, then the predictor: the ancestral
        DDPM step on L and A (A2-A4, A7) and the variance-exploding step on X (DiffCSP)."""
        tt = torch.full((self.spec.num_graphs,), t, dtype=torch.long, device=self.spec.device)
        last = s == 0
        sig_t, sig_s = self.sigma[t], self.sigma[s]
        x, pred = state.frac_coords, None
        if step_lr > 0:  # corrector: Langevin on X
            pred = guidance.predict(self.diffusion, state, tt)
            gamma = step_lr * (sig_t / self.sigma[1]) ** 2
            x = x + gamma * pred.score_X
            if not last:
                x = x + (2 * gamma).sqrt() * self.randn(tuple(x.shape))
            x = x % 1.0
            state = state.replace(frac_coords=x)
        if pred is None or predictor_input == "corrected":
            pred = guidance.predict(self.diffusion, state, tt)
        x = x + (sig_t ** 2 - sig_s ** 2) * pred.score_X
        ab_t, ab_s = self.abar[t], self.abar[s]
        alpha = ab_t / ab_s
        coef = (1 - alpha) / (1 - ab_t).sqrt()
        lat = (state.lattices - coef * pred.eps_L) / alpha.sqrt()
        a = self.tie((state.types - coef * pred.eps_A) / alpha.sqrt())
        if not last:
            # the noise is drawn at every temperature, so the other channels' stays the same; at 1
            # each product is the paper's step bit for bit
            x_std = (sig_s ** 2 * (sig_t ** 2 - sig_s ** 2) / sig_t ** 2).sqrt()
            x = x + self.geometry_temperature * x_std * self.randn(tuple(x.shape))
            std = ((1 - alpha) * (1 - ab_s) / (1 - ab_t)).sqrt()
            lat = lat + self.geometry_temperature * std * self.randn(tuple(lat.shape))
            a = a + self.type_temperature * std * self.type_noise()
        a = self.clamp_fixed(a, s)
        x = x % 1.0
        if repulsion is not None and repulsion.active(s):
            x = repulsion.apply(x, lat * self.lattice_factor, self.spec.batch, self.gen)
        estimate = None  # a self-conditioned denoiser reads this step's estimate at the next one
        if self.diffusion.model_cfg.self_condition:
            estimate = self.diffusion.clean_type_estimate(state.types, pred.eps_A, tt[self.spec.batch])
        return state.replace(types=a, frac_coords=x, lattices=lat, type_estimate=estimate)

    def decode(self, state: NoisyBatch, allowed_types: Sequence[int] | None) -> CrystalBatch:
        """Types = argmax + 1 over the allowed elements (fixed types kept), lattices in Å, a
        left-handed lattice flipped to L -> -L, X -> -X (the same crystal)."""
        spec, logits = self.spec, state.types
        if allowed_types is not None:
            keep = torch.zeros(self.max_z, dtype=torch.bool, device=spec.device)
            keep[torch.tensor(sorted({int(z) for z in allowed_types}), device=spec.device) - 1] = True
            logits = logits.masked_fill(~keep, float("-inf"))
        types = torch.where(spec.fixed_mask, spec.atom_types, logits.argmax(-1) + 1)
        lat, x = state.lattices * self.lattice_factor, state.frac_coords
        flip = torch.linalg.det(lat) < 0
        if bool(flip.any()):
            lat = torch.where(flip.view(-1, 1, 1), -lat, lat)
            x = torch.where(flip[spec.batch].unsqueeze(-1), (-x) % 1.0, x)
        return CrystalBatch(types, x % 1.0, lat, spec.num_atoms, spec.batch, spec.dos, spec.cond_mask,
                            spec.fixed_mask, None if spec.structure_ids is None else list(spec.structure_ids))
