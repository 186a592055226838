# Models: the DOS-conditioned joint diffusion model (classifier-free guidance, paper §2.4), the
# time-dependent DOS regressor (classifier guidance) and the time-independent surrogate DOS
# predictor used only for evaluation (Table 1). Only the checkpoint later stages use is declared
# (best.pt, or final.pt with `weights: final`): last.pt (optimiser state) survives an interrupted
# job, so rerunning the target resumes training; a job rerun because something changed trains
# afresh (see `resumable` in common.smk).

MODEL_FILES = [checkpoint_path(k) for k in MODEL_KINDS]


rule train:
    input:
        store=STORE,
        split=SPLIT,
        standardiser=STANDARDISER,
    output:
        f"{W}/models/{{kind}}/{{weights}}.pt",
    log:
        log("train_{kind}_{weights}"),
    params:
        outdir=output_dir,
        size=RUN["model"]["size"],
        model=model_flags,
        epochs=train_option("epochs"),
        batch_size=train_option("batch_size"),
        lr=train_option("lr"),
        optional=train_flags("patience", "max_steps", "ema_decay", "repeat_source", "deterministic"),
        device=RUN["device"],
        seed=RUN["seed"],
    threads: THREADS
    resources:
        mem_mb=16000,
        runtime=24 * 60,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        resumable(
            "OMP_NUM_THREADS={threads} dosmatgen train --kind {wildcards.kind} --store {input.store}"
            " --split {input.split} --standardiser {input.standardiser} --size {params.size} {params.model}"
            " --epochs {params.epochs} --batch-size {params.batch_size} --lr {params.lr} {params.optional}"
            " --device {params.device} --seed {params.seed} --out {params.outdir} --no-progress"
            " > {log} 2>&1",
            marker="{params.outdir}/.incomplete",
            reset="rm -f {params.outdir}/last.pt {params.outdir}/final.pt",
        )


if AUTHORS:

    # The authors' released diffusion model is imported, not trained (the surrogate and a
    # regressor, if asked for, are trained as usual on their split).
    ruleorder: import_authors > train

    rule import_authors:
        output:
            checkpoint=checkpoint_path("diffusion"),
            standardiser=STANDARDISER,
        log:
            log("import_authors"),
        params:
            release=RUN["authors"]["release"],
            commit=cli_flags({"authors_commit": RUN["authors"]["commit"]}),
            outdir=output_dir,
        threads: 1
        resources:
            **SMALL,
        conda:
            CONDA_ENV
        shell:
            "dosmatgen import authors --release {params.release:q} {params.commit} --out {params.outdir} > {log} 2>&1"
