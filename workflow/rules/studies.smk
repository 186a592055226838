# Constrained generation with classifier-free guidance (paper §3.2-3.3): masked generation,
# template-guided generation, fixed atom type, the IrO2 screening workflow, and the energy-window
# sweep. Each study writes its folder work/<profile>/studies/<study>/ (summary.csv/.md,
# candidates.csv, results.json, CIFs) in one atomic rename.

STUDY_RESULTS = [study_path(s) for s in STUDIES]
STUDY_FILES = STUDY_RESULTS


rule study:
    input:
        checkpoint=checkpoint_path("diffusion"),
        surrogate=checkpoint_path("surrogate"),
        store=STORE,
    output:
        study_path("{study}"),
        study_path("{study}", "summary.csv"),
    log:
        log("study_{study}"),
    params:
        flags=study_flags,
        outdir=output_dir,
        mlff=EVAL["mlff"],
        steps=RUN["generate"]["steps"],
        device=RUN["device"],
        seed=RUN["seed"],
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=12 * 60,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} dosmatgen studies {wildcards.study} --checkpoint {input.checkpoint}"
        " --surrogate {input.surrogate} --store {input.store} {params.flags} --steps {params.steps}"
        " --mlff {params.mlff} --device {params.device} --seed {params.seed} --out {params.outdir} > {log} 2>&1"
