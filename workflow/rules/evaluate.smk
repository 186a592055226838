# Evaluation: surrogate DOS MAE (Table 1) and structure / composition match rates and element
# accuracy (Table 2) of each regenerated set (the unconditional baseline included), the DOS-lookup
# baseline, MLFF formation energies (Fig. 2, B.1) of generated (not baseline) and ground-truth test
# structures, the result tables with their provenance. Tables, claims and provenance are
# registered for Snakemake's report (captions in workflow/report/).

METRICS = [metrics_path(g, t) for g in REGENERATED for t in T0S] + (
    [lookup_path()] if "lookup" in BASELINES else []
)
FORMATION_GENERATED = {(g, t): formation_path(f"{g}_T{t}") for g in GUIDANCES for t in T0S}
FORMATION_TRUTH = formation_path("ground_truth")
RUN_PROVENANCE = f"{W}/provenance.json"  # `evaluate tables` copies it to results/provenance.json
PROVENANCE = f"{R}/provenance.json"
TABLE_NAMES = ["table1_dos_mae", "table2_match_rates", "formation_energies"]
RESULT_TABLES = [f"{R}/{name}.{ext}" for name in TABLE_NAMES for ext in ("csv", "md")]  # each as .csv, then .md
CLAIMS = [f"{R}/claims.md", f"{R}/claims.json"]
TABLE_FILES = RESULT_TABLES + [PROVENANCE] + CLAIMS
FORMATION_FLAGS = cli_flags(
    {
        "mlff": EVAL["mlff"],
        "relaxer": EVAL["relaxer"],
        "max_atoms": EVAL["relax_max_atoms"],
        "device": RUN["device"] if EVAL["relaxer"] == "batched" else None,  # ase: one crystal per CPU call
        "limit": EVAL["relax_limit"],
        "steps": EVAL["relax_steps"],
        "fmax": EVAL["fmax"],
        "refs_cache": REFS_CACHE,
    }
)


# Structure match after an MLFF relaxation as well (not the paper's Table 2): the sets named in
# evaluate.relaxed_match.sets relax each composition-matched generated crystal with evaluate.mlff.
# (relaxed_match_flags in common.smk)
check_set_names("evaluate.relaxed_match.sets", RELAXED_MATCH_SETS)


rule score:
    input:
        generated=generated_path("{guidance}", "{t0}"),
        surrogate=checkpoint_path("surrogate"),
        store=STORE,
        split=SPLIT,
    output:
        metrics_path("{guidance}", "{t0}"),
    log:
        log("score_{guidance}_T{t0}"),
    params:
        timeout=EVAL["match_timeout"],
        device=RUN["device"],
        relaxed=relaxed_match_flags,
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=6 * 60,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} dosmatgen evaluate score --generated {input.generated}"
        " --surrogate {input.surrogate} --store {input.store} --split {input.split}"
        " --match-timeout {params.timeout} --workers {threads} --device {params.device}"
        " {params.relaxed} --out {output} --no-progress > {log} 2>&1"


rule lookup:
    input:
        store=STORE,
        split=SPLIT,
        standardiser=STANDARDISER,
    output:
        lookup_path(),
    log:
        log("lookup"),
    params:
        limit=cli_flags({"limit": RUN["generate"]["limit"]}),
        device=RUN["device"],
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} dosmatgen evaluate lookup --store {input.store} --split {input.split}"
        " --standardiser {input.standardiser} --subset test {params.limit} --device {params.device}"
        " --out {output} > {log} 2>&1"


rule formation_generated:
    input:
        generated=generated_path("{guidance}", "{t0}"),
    output:
        formation_path("{guidance}_T{t0}"),
    log:
        log("formation_{guidance}_T{t0}"),
    params:
        flags=FORMATION_FLAGS,
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    conda:
        CONDA_ENV
    shell:
        resumable(
            "OMP_NUM_THREADS=1 dosmatgen evaluate formation --generated {input.generated} {params.flags}"
            " --workers {threads} --out {output} --no-progress > {log} 2>&1",
            marker="{output}.incomplete",
            reset="rm -rf {output}.parts",
        )


rule formation_truth:
    input:
        store=STORE,
        split=SPLIT,
    output:
        FORMATION_TRUTH,
    log:
        log("formation_ground_truth"),
    params:
        flags=FORMATION_FLAGS,
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=12 * 60,
    conda:
        CONDA_ENV
    shell:
        resumable(
            "OMP_NUM_THREADS=1 dosmatgen evaluate formation --store {input.store} --split {input.split}"
            " --subset test {params.flags} --workers {threads} --out {output} --no-progress > {log} 2>&1",
            marker="{output}.incomplete",
            reset="rm -rf {output}.parts",
        )


rule provenance:
    input:
        store=STORE,
        split=SPLIT,
        checkpoints=MODEL_FILES,
    output:
        RUN_PROVENANCE,
    log:
        log("provenance"),
    params:
        run_config=json.dumps(RUN, sort_keys=True),
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen figures provenance --run-config {params.run_config:q} --inputs {input} --out {output} > {log} 2>&1"


rule result_tables:
    input:
        metrics=METRICS,
        formation=list(FORMATION_GENERATED.values()) + [FORMATION_TRUTH],
        provenance=RUN_PROVENANCE,
    output:
        report(RESULT_TABLES[0], caption="../report/table1.rst", category="Tables", subcategory="Table 1"),
        RESULT_TABLES[1],
        report(RESULT_TABLES[2], caption="../report/table2.rst", category="Tables", subcategory="Table 2"),
        RESULT_TABLES[3],
        report(RESULT_TABLES[4], caption="../report/formation_table.rst", category="Tables", subcategory="Formation energies"),
        RESULT_TABLES[5],
        report(PROVENANCE, caption="../report/provenance.rst", category="Run"),
    log:
        log("tables"),
    params:
        metrics_dir=input_dir,
        out=output_dir,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen evaluate tables --metrics-dir {params.metrics_dir} --formation {input.formation}"
        " --provenance {input.provenance} --out {params.out} > {log} 2>&1"


rule claims:
    input:
        RESULT_TABLES,
    output:
        report(CLAIMS[0], caption="../report/claims.rst", category="Run"),
        CLAIMS[1],
    log:
        log("claims"),
    params:
        results=output_dir,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen evaluate claims --results {params.results} > {log} 2>&1"


# Table 1 judged by DFT as well (issue 37): target `tables_dft`, never part of `all`. The first n
# valid crystals of each set in evaluate.dft_judge.sets get a GPAW site DOS (unrelaxed), scored
# beside the surrogate's judgement of the same crystals; labels are cached per crystal (resumable).
DFT_JUDGE = EVAL.get("dft_judge", {})
DFT_JUDGED = [f"{W}/dft_judge/{name}.json" for name in DFT_JUDGE.get("sets", [])]
DFT_TABLES = [f"{R}/table1_dft_judge.{ext}" for ext in ("md", "csv")] + [f"{R}/claims_by_judge.{ext}" for ext in ("md", "json")]
check_set_names("evaluate.dft_judge.sets", DFT_JUDGE.get("sets", []))


rule dft_judge:
    input:
        generated=generated_path("{guidance}", "{t0}"),
        surrogate=checkpoint_path("surrogate"),
        store=STORE,
    output:
        f"{W}/dft_judge/{{guidance}}_T{{t0}}.json",
    log:
        log("dft_judge_{guidance}_T{t0}"),
    params:
        flags=cli_flags({k: DFT_JUDGE.get(k) for k in ("n", "timeout", "fallback_basis")}),
        cache=f"{W}/dft_judge/labels",
    threads: THREADS
    resources:
        mem_mb=4000,
        runtime=24 * 60,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS=1 dosmatgen evaluate dft-judge --generated {input.generated} --surrogate {input.surrogate}"
        " --store {input.store} {params.flags} --workers {threads} --cache {params.cache} --out {output} > {log} 2>&1"


rule dft_tables:
    input:
        DFT_JUDGED,
    output:
        report(DFT_TABLES[0], caption="../report/table1_dft_judge.rst", category="Tables", subcategory="Table 1 judged by DFT"),
        DFT_TABLES[1],
        report(DFT_TABLES[2], caption="../report/claims_by_judge.rst", category="Run"),
        DFT_TABLES[3],
    log:
        log("dft_tables"),
    params:
        out=output_dir,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen evaluate dft-table --judged {input} --out {params.out} > {log} 2>&1"
