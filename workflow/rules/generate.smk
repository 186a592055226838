# Table 1/2 regeneration: rebuild test structures from their per-atom DOS, starting from the test
# structure noised to step t0 (t0 = 1000: from the prior), with classifier-free guidance (the
# conditional diffusion model, weight omega) or classifier guidance (unconditional score + the
# regressor's gradient), and the unconditional model (guidance uncond, a Table 2 baseline).

GENERATED = [generated_path(g, t) for g in REGENERATED for t in T0S]


rule regenerate:
    input:
        unpack(regenerate_inputs),
    output:
        generated_path("{guidance}", "{t0}"),
    log:
        log("regenerate_{guidance}_T{t0}"),
    params:
        guidance=guidance_flags,
        steps=RUN["generate"]["steps"],
        limit=cli_flags({"limit": RUN["generate"]["limit"]}),
        batch_size=RUN["generate"]["batch_size"],
        sampler=sampler_flags(lambda wildcards: wildcards.guidance),
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
            "OMP_NUM_THREADS={threads} dosmatgen evaluate regenerate --checkpoint {input.checkpoint}"
            " --store {input.store} --split {input.split} --subset test --guidance {wildcards.guidance}"
            " {params.guidance} --t0 {wildcards.t0} --steps {params.steps} {params.limit}"
            " --batch-size {params.batch_size} {params.sampler} --device {params.device} --seed {params.seed}"
            " --out {output} --no-progress > {log} 2>&1",
            marker="{output}.incomplete",
            reset="rm -rf {output}.chunks",
        )
