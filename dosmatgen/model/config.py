"""Hyper-parameters of the denoiser and of the joint diffusion (docs/method.md, paper Appendix A).

Both configs round-trip through plain dicts (``to_dict`` / ``from_dict``) so that they can live in
YAML files and in checkpoints. Unknown keys and impossible values raise
:class:`dosmatgen.errors.ConfigError`.

>>> ModelConfig.paper().hidden_dim, ModelConfig.compact().num_layers
(512, 4)
>>> DiffusionConfig.from_dict(DiffusionConfig().to_dict()) == DiffusionConfig()
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dosmatgen.config_dataclass import DictConfig, require_positive_ints
from dosmatgen.errors import ConfigError

#: How the DOS condition is dropped during training (classifier-free guidance, paper §2.4).
DROP_MODES: tuple[str, ...] = ("structure", "batch", "atom")
#: What the type head predicts: the noise of the type vectors (paper, A10) or the clean element.
TYPE_TARGETS: tuple[str, ...] = ("eps", "x0", "posterior")
#: What the lattice channel diffuses: L itself (the paper) or L / N^(1/3) (see DiffusionConfig).
LATTICE_SCALES: tuple[str, ...] = ("none", "atoms")
#: How a site DOS becomes the condition vector: one linear map (the paper) or that map plus 1-D convolutions.
DOS_ENCODERS: tuple[str, ...] = ("linear", "conv")
#: How the type head is parameterised: one linear map per element (the paper) or element + group + period terms.
TYPE_HEADS: tuple[str, ...] = ("element", "group_period")


@dataclass(frozen=True)
class ModelConfig(DictConfig):
    """Size of the CSPNet-style denoiser (docs/method.md).

    Attributes:
        hidden_dim: width of node features and of every MLP.
        num_layers: message-passing layers.
        num_freqs: Fourier frequencies per fractional-coordinate axis on each edge.
        time_dim: width of the sinusoidal time embedding.
        max_z: one-hot width Z of the atom types (atomic numbers 1..max_z).
        dos_dim: length of a site DOS (energy bins).
        layer_norm: pre-LayerNorm in each layer and a final LayerNorm.
        condition_every_layer: also add the DOS condition vector (through a linear map per layer)
            before every message-passing layer, not only to the input embedding (not in the
            paper; an option of issue 13's ablation, ``results/ablation_condition.md``).
        dos_encoder: ``"linear"`` (the paper, Fig. 1): the condition is one linear map of the site
            DOS. ``"conv"`` (not in the paper): that map plus 1-D convolutions over the energy grid
            (:class:`~dosmatgen.model.denoiser.ConvDOSEncoder`), features that can follow a band's
            position and width (issue 35: the period of an element within its group).
        type_head: ``"element"`` (the paper): one linear map to a value per element. ``"group_period"``
            (not in the paper): that map plus a term shared by the elements of a group and one shared
            by the elements of a period (:class:`~dosmatgen.model.denoiser.GroupPeriodHead`).
        self_condition: not in the paper (issue 35): the denoiser also reads its own estimate of the
            clean type vectors, a linear map of it added to the input embedding (self-conditioning,
            Chen et al. 2022, "Analog Bits"). In training, half the batches first run the network
            without it and feed that estimate back (no gradient through it); in sampling, each step
            feeds the previous step's estimate (:meth:`~dosmatgen.model.diffusion.JointDiffusion.clean_type_estimate`),
            so the sites of a crystal can agree on their elements. ``False``: the paper's network.
    """

    hidden_dim: int = 128
    num_layers: int = 4
    num_freqs: int = 10
    time_dim: int = 64
    max_z: int = 100
    dos_dim: int = 400
    layer_norm: bool = True
    condition_every_layer: bool = False
    dos_encoder: str = "linear"
    type_head: str = "element"
    self_condition: bool = False
    WHAT: ClassVar[str] = "model"

    def __post_init__(self) -> None:
        require_positive_ints(self, ("hidden_dim", "num_layers", "num_freqs", "time_dim", "max_z", "dos_dim"),
                              "model")
        if self.time_dim % 2:
            raise ConfigError(f"model config time_dim must be even (sin + cos halves), got {self.time_dim}")
        for name, choices in (("dos_encoder", DOS_ENCODERS), ("type_head", TYPE_HEADS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"model config {name} must be one of {choices}, got {getattr(self, name)!r}")

    @classmethod
    def paper(cls) -> "ModelConfig":
        """The paper's size: hidden 512, 6 layers, 128 frequencies, time 256 (~12.3 M parameters)."""
        return cls(hidden_dim=512, num_layers=6, num_freqs=128, time_dim=256)

    @classmethod
    def compact(cls) -> "ModelConfig":
        """CPU size: hidden 128, 4 layers, 10 frequencies, time 64."""
        return cls(hidden_dim=128, num_layers=4, num_freqs=10, time_dim=64)

    @classmethod
    def tiny(cls) -> "ModelConfig":
        """For unit tests: hidden 32, 2 layers, 4 frequencies, time 16."""
        return cls(hidden_dim=32, num_layers=2, num_freqs=4, time_dim=16)


@dataclass(frozen=True)
class DiffusionConfig(DictConfig):
    """Forward processes, loss weights and condition dropping (Appendix A, Eqs. A1-A11).

    Attributes:
        timesteps: T.
        cosine_s: offset s of the cosine beta schedule.
        beta_min, beta_max: the betas are clipped to this range.
        sigma_begin, sigma_end: sigma_1 and sigma_T of the geometric wrapped-normal schedule (A5).
        lambda_A, lambda_X, lambda_L: loss weights (A11).
        type_target: ``"eps"`` (the paper): the type head predicts eps_A and L_A is the MSE of A10.
            ``"x0"`` (not in the paper): the head predicts the clean element's logits, eps_A is derived
            from them (:meth:`~dosmatgen.model.diffusion.JointDiffusion.eps_from_logits`: the same
            sampler and guidance) and L_A is their cross-entropy (weight ``lambda_ce``); the optimum is
            the same E[A_0 | S_t, y], but the DOS condition gets gradient where A_t reveals nothing.
            ``"posterior"`` (not in the paper): as ``"x0"``, with A_t's exact likelihood added to the
            logits (Bayes' rule with the head as the prior,
            :meth:`~dosmatgen.model.diffusion.JointDiffusion.element_logits`); it removes a failure of
            ``"x0"``, whose head learns to read the element from the (memorisable) training DOS,
            ignores A_t and then overrides visible elements of test crystals at small t.
        lambda_ce: weight of that cross-entropy (``type_target`` ``"x0"`` or ``"posterior"``).
        lambda_aux: weight of an auxiliary element cross-entropy from the final node features of
            the conditioned atoms through a separate linear head (not in the paper; 0 = off). It
            trains the features only: sampling does not use that head.
        dos_noise: standard deviation of Gaussian noise added to the standardised DOS condition in
            training only (not in the paper; 0 = off): the network cannot read the element from a
            memorised training DOS and must use what a band looks like (issue 35, a regulariser).
        dos_shift: largest shift, in energy bins (0.05 eV each), of a crystal's standardised DOS
            condition in training only (not in the paper; 0 = off): each crystal's sites move together
            by a random whole number of bins in [-dos_shift, dos_shift], so that the network cannot
            key on the exact bin of a memorised peak (issue 35, a regulariser that keeps band shapes).
        dos_broaden: largest extra Gaussian broadening, in energy bins (standard deviation), of a
            crystal's standardised DOS condition in training only (not in the paper; 0 = off): each
            crystal's sites are broadened together by a width drawn uniformly in [0, dos_broaden], so
            that the network cannot key on how sharp a memorised peak is (issue 35, a regulariser).
        lattice_scale: ``"none"`` (the paper): the lattice channel diffuses L (A6). ``"atoms"`` (not
            in the paper): it diffuses L / N^(1/3), whose clean value has the size of the volume per
            atom for every cell size (as MatterGen scales its lattice prior); the network sees the
            scaled lattice and the sampler returns N^(1/3) times it. Without it the compact model's
            generated cells shrink with N (median volume ratio 0.60 at 9-10 atoms, results/validity_probe/).
        p_uncond: probability of dropping the DOS condition (paper §2.4).
        drop_mode, p_atom_mask: how the condition is dropped
            (:func:`~dosmatgen.model.diffusion.drop_condition`): ``"structure"`` per crystal, a further
            ``p_atom_mask`` of them keeping it on a random subset of atoms (so masked generation is in
            distribution); ``"batch"`` (the reference code) or ``"atom"``.
        sigma_norm_samples, sigma_norm_seed: Monte-Carlo samples per sigma, and seed, of lambda_t (A9).
        wn_images: periodic images -n..n kept in the wrapped-normal sums.
        alphas_cumprod_table, score_norm_table: abar_t (t = 0..T) and 1 / lambda_t (t = 1..T, A9) taken
            as given instead of computed (None, the default). ``dosmatgen import authors`` sets them to
            the release's float32 abar_t (up to 2e-4 relative from ours in float64) and its own
            unseeded ``sigmas_norm``, so that sampling matches the release.
    """

    timesteps: int = 1000
    cosine_s: float = 0.008
    beta_min: float = 1e-4
    beta_max: float = 0.9999
    sigma_begin: float = 0.005
    sigma_end: float = 0.5
    lambda_A: float = 20.0
    lambda_X: float = 1.0
    lambda_L: float = 1.0
    type_target: str = "eps"
    lambda_ce: float = 1.0
    lambda_aux: float = 0.0
    dos_noise: float = 0.0
    dos_shift: int = 0
    dos_broaden: float = 0.0
    lattice_scale: str = "none"
    p_uncond: float = 0.2
    drop_mode: str = "structure"
    p_atom_mask: float = 0.2
    sigma_norm_samples: int = 5000
    sigma_norm_seed: int = 0
    wn_images: int = 5
    alphas_cumprod_table: tuple[float, ...] | None = None
    score_norm_table: tuple[float, ...] | None = None
    WHAT: ClassVar[str] = "diffusion"

    def __post_init__(self) -> None:
        for name, length in (("alphas_cumprod_table", self.timesteps + 1), ("score_norm_table", self.timesteps)):
            table = getattr(self, name)
            if table is None:
                continue
            try:
                values = tuple(float(v) for v in table)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"diffusion config {name} must be a list of numbers ({exc})") from exc
            if len(values) != length or not all(0 < v < float("inf") for v in values):
                raise ConfigError(f"diffusion config {name} must hold {length} finite numbers > 0 "
                                  f"(one per timestep), got {len(values)} values")
            object.__setattr__(self, name, values)
        if not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise ConfigError(f"diffusion config timesteps must be an integer >= 2, got {self.timesteps!r}")
        if not 0 < self.beta_min < self.beta_max < 1:
            raise ConfigError(f"diffusion config needs 0 < beta_min < beta_max < 1, got "
                              f"{self.beta_min}, {self.beta_max}")
        if not 0 < self.sigma_begin < self.sigma_end:
            raise ConfigError(f"diffusion config needs 0 < sigma_begin < sigma_end, got "
                              f"{self.sigma_begin}, {self.sigma_end}")
        for name in ("lambda_A", "lambda_X", "lambda_L", "lambda_ce", "lambda_aux", "dos_noise",
                     "dos_broaden"):
            if getattr(self, name) < 0:
                raise ConfigError(f"diffusion config {name} must be >= 0, got {getattr(self, name)}")
        for name in ("p_uncond", "p_atom_mask"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"diffusion config {name} must be in [0, 1], got {getattr(self, name)}")
        for name, choices in (("type_target", TYPE_TARGETS), ("lattice_scale", LATTICE_SCALES),
                              ("drop_mode", DROP_MODES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"diffusion config {name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.sigma_norm_samples < 100:
            raise ConfigError(f"diffusion config sigma_norm_samples must be >= 100, got {self.sigma_norm_samples}")
        if not isinstance(self.dos_shift, int) or self.dos_shift < 0:
            raise ConfigError(f"diffusion config dos_shift must be a whole number of bins >= 0, got {self.dos_shift!r}")
        if self.wn_images < 1:
            raise ConfigError(f"diffusion config wn_images must be >= 1, got {self.wn_images}")
