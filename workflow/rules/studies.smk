# Constrained generation with classifier-free guidance (paper §3.2-3.3): masked generation,
# template-guided generation, fixed atom type, the IrO2 screening workflow, and the energy-window
# sweep. Each study writes its folder work/<profile>/studies/<study>/ (summary.csv/.md,
# candidates.csv, results.json, CIFs) in one atomic rename; resumable intermediate files of the
# relaxing studies live beside it in <study>.work/.

STUDY_RESULTS = [study_path(s) for s in STUDIES]
# Each study's summary table, copied to the results folder beside Tables 1-2 (the CSV into the report).
STUDY_TABLES = [f"{R}/study_{s}.{ext}" for s in STUDIES for ext in ("csv", "md")]
STUDY_FILES = STUDY_RESULTS + STUDY_TABLES


rule study:
    input:
        checkpoint=checkpoint_path("diffusion"),
        surrogate=checkpoint_path("surrogate"),
        store=STORE,
    output:
        study_path("{study}"),
        study_path("{study}", "summary.csv"),
        study_path("{study}", "summary.md"),
    log:
        log("study_{study}"),
    params:
        flags=study_flags,
        outdir=output_dir,
        steps=RUN["generate"]["steps"],
        omega=RUN["generate"]["omega"],
        sampler=sampler_flags("cfg", RUN["studies"].get("sampler")),
        batch_size=RUN["generate"]["batch_size"],
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
        resumable(
            "OMP_NUM_THREADS={threads} dosmatgen studies {wildcards.study} --checkpoint {input.checkpoint}"
            " --surrogate {input.surrogate} --store {input.store} {params.flags} --steps {params.steps}"
            " --omega {params.omega} {params.sampler} --batch-size {params.batch_size} --device {params.device}"
            " --seed {params.seed} --out {params.outdir} --quiet > {log} 2>&1",
            marker="{params.outdir}.incomplete",
            reset="rm -rf {params.outdir}.work",
        )


rule study_table:
    input:
        csv=study_path("{study}", "summary.csv"),
        md=study_path("{study}", "summary.md"),
    output:
        csv=report(f"{R}/study_{{study}}.csv", caption="../report/study_table.rst", category="Studies",
                   subcategory="{study}"),
        md=f"{R}/study_{{study}}.md",
    log:
        log("study_table_{study}"),
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "cp {input.csv} {output.csv} 2> {log} && cp {input.md} {output.md} 2>> {log}"
