# Shared names and helper functions of the rules (the rule files hold only rules and file lists).
# Wildcards: kind (diffusion, regressor, surrogate), guidance (cfg, classifier), t0 (start step),
# study (masked, template, fixed-type, screen, window-sweep).

GUIDANCES = RUN["generate"]["guidance"]
T0S = RUN["generate"]["t0"]
STUDIES = RUN["studies"]["run"]
EVAL = RUN["evaluate"]
# Table 2 baselines (not in the paper): the unconditional model is regenerated and scored like a
# guidance mode (no formation energies); the DOS lookup is one metrics file without a T.
BASELINES = EVAL["baselines"]
REGENERATED = GUIDANCES + [g for g in ("uncond",) if g in BASELINES]
# Elemental reference energies of the MLFF, computed once and shared by every relaxing job.
REFS_CACHE = f"{W}/formation/elemental_refs_{EVAL['mlff']}.json"
# The time-dependent regressor is only needed for classifier guidance.
MODEL_KINDS = ["diffusion", "surrogate"] + (["regressor"] if "classifier" in GUIDANCES else [])
# Every rule runs in the project's environment (used with --software-deployment-method conda).
CONDA_ENV = os.path.join(workflow.basedir, "environment.yml")
# Memory (MB) and wall time (minutes) per job, read by cluster executors; local runs ignore them.
SMALL = dict(mem_mb=2000, runtime=30)


wildcard_constraints:
    kind="diffusion|regressor|surrogate",
    guidance="cfg|classifier|uncond",
    t0=r"\d+",
    study="masked|template|fixed-type|screen|window-sweep",
    weights="best|final",


def log(name):
    """Log file of a job: work/<profile>/logs/<name>.log."""
    return f"{LOGS}/{name}.log"


def checkpoint_path(kind):
    """The checkpoint later stages use: best.pt or final.pt (the stage's ``weights``); a train
    job writes both (the rule's output pattern has a ``weights`` wildcard)."""
    return f"{W}/models/{kind}/{RUN['train'][kind]['weights']}.pt"


def generated_path(guidance, t0):
    return f"{W}/generated/{guidance}_T{t0}.npz"


def metrics_path(guidance, t0):
    return f"{W}/metrics/{guidance}_T{t0}.json"


def lookup_path():
    """Metrics file of the DOS-lookup baseline (beside the scored sets, no T)."""
    return f"{W}/metrics/lookup.json"


def formation_path(name):
    return f"{W}/formation/{name}.json"


def study_path(study, name="results.json"):
    return f"{W}/studies/{study}/{name}"


def output_dir(wildcards, output):
    """Folder of a job's first output file (params that name a folder, not a file)."""
    return os.path.dirname(output[0])


def input_dir(wildcards, input):
    """Folder of a job's first input file."""
    return os.path.dirname(input[0])


def regenerate_inputs(wildcards):
    """Classifier guidance also needs the time-dependent regressor."""
    inputs = dict(checkpoint=checkpoint_path("diffusion"), store=STORE, split=SPLIT)
    if wildcards.guidance == "classifier":
        inputs["regressor"] = checkpoint_path("regressor")
    return inputs


def guidance_flags(wildcards, input):
    """CFG takes omega, classifier guidance its regressor and scale, uncond nothing."""
    gen = RUN["generate"]
    if wildcards.guidance == "classifier":
        return cli_flags({"regressor": input.regressor, "guidance_scale": gen["guidance_scale"]})
    if wildcards.guidance == "uncond":
        return ""
    return cli_flags({"omega": gen["omega"]})


def check_set_names(key, names):
    """Stop when the config key ``key`` names sets (<guidance>_T<t0>) this run does not generate."""
    unknown = sorted(set(names) - {f"{g}_T{t}" for g in REGENERATED for t in T0S})
    if unknown:
        raise ValueError(f"{key} names sets this run does not generate: {unknown}")


#: The sets (<guidance>_T<t0>) whose scoring also matches after an MLFF relaxation (evaluate.relaxed_match).
RELAXED_MATCH_SETS = EVAL.get("relaxed_match", {}).get("sets", [])


def relaxed_match_flags(wildcards):
    """``--relaxed-match MLFF`` (evaluate.mlff) for the sets of evaluate.relaxed_match.sets, else nothing."""
    chosen = f"{wildcards.guidance}_T{wildcards.t0}" in RELAXED_MATCH_SETS
    return cli_flags({"relaxed_match": EVAL["mlff"] if chosen else None})


#: SamplerOptions fields the rules render themselves (or that the run config does not set).
OWN_FLAGS = ("guidance", "omega", "guidance_scale", "steps", "batch_size", "seed", "allowed_types")


def sampler_flags(guidance, override=None):
    """Every other SamplerOptions field of the generate section, for one guidance (the regenerate
    rule's wildcard, or "cfg" for the studies), with ``override``'s values in place of the
    section's (the studies' ``studies.sampler``): values equal to the defaults render nothing,
    omega_geometry weights CFG only, repel_until goes with repel_distance. A field added to
    SamplerOptions (and the schema) reaches both rules without editing them."""

    def flags(wildcards=None):
        g = guidance if isinstance(guidance, str) else guidance(wildcards)
        gen, defaults = {**RUN["generate"], **(override or {})}, SamplerOptions()
        names = ["step_lr", "omega_geometry"] + [f.name for f in dataclasses.fields(SamplerOptions)]  # that order first
        options = {name: gen.get(name) for name in dict.fromkeys(names) if name not in OWN_FLAGS}
        if g != "cfg":
            options["omega_geometry"] = None
        if options.get("repel_distance") is None:
            options["repel_until"] = None
        return cli_flags({k: v for k, v in options.items() if v != getattr(defaults, k)})

    return flags


# Studies that relax candidates with the MLFF (and so take the force-field flags).
MLFF_STUDIES = ("screen", "window-sweep")


def study_flags(wildcards):
    """The study's config section as command-line flags (config keys = option names), plus the
    force-field settings of the evaluate section for the studies that relax structures."""
    flags = dict(RUN["studies"][wildcards.study])
    if wildcards.study in MLFF_STUDIES:
        flags = {"mlff": EVAL["mlff"], "relaxer": EVAL["relaxer"], "fmax": EVAL["fmax"],
                 "relax_steps": EVAL["relax_steps"],
                 "refs_cache": REFS_CACHE, "workers": RUN["threads"]} | flags
    return cli_flags(flags)


def train_option(key):
    return lambda wildcards: RUN["train"][wildcards.kind][key]


def train_flags(*keys):
    """Optional training settings (null = the trainer's default) as flags; ``repeat_source``
    ({source: K}) becomes ``--repeat-source SOURCE=K ...``."""

    def flags(wildcards):
        options = {k: RUN["train"][wildcards.kind][k] for k in keys}
        if "repeat_source" in options:
            options["repeat_source"] = [f"{s}={k}" for s, k in sorted(options["repeat_source"].items())] or None
        return cli_flags(options)

    return flags


def model_flags(wildcards):
    """Architecture options of the run config's model section that apply to this kind (the
    paper's lattice_scale, none, and dos_shift, 0, are the trainer's defaults and need no flag)."""
    model = RUN["model"]
    scale = model["lattice_scale"] if model["lattice_scale"] != "none" else None
    if wildcards.kind == "diffusion":
        return cli_flags({"type_target": model["type_target"], "lattice_scale": scale,
                          "dos_shift": model["dos_shift"] or None})
    if wildcards.kind == "regressor":
        return cli_flags({"lattice_scale": scale})
    return ""


def resumable(command, marker, reset):
    """Shell text running ``command`` so that only an *interrupted* run of that very command resumes.

    The commands keep resume state (training last.pt, sampling chunks, relaxation parts). That
    state is reused only when ``marker`` survives from a failed or killed attempt and holds the
    same command text (inputs, parameters and flags as formatted). A finished job rerun because its
    inputs, parameters or code changed, and a killed job whose command has changed since (say, a
    new training flag), start clean (``reset``), so results never mix old and new settings. The
    marker is removed when ``command`` succeeds.
    """
    # the command's text once, quoted by a heredoc so that nothing in it expands before eval runs it
    return (f"dosmatgen_command=$(cat <<'DOSMATGEN_COMMAND'\n{command}\nDOSMATGEN_COMMAND\n)\n"
            f'mkdir -p "$(dirname {marker})"\n'
            f'if [ "$(cat {marker} 2>/dev/null)" != "$dosmatgen_command" ]; then {reset}; fi\n'
            f"printf '%s\\n' \"$dosmatgen_command\" > {marker}\n"
            f'eval "$dosmatgen_command"\nrm -f {marker}')
