# Figures (PNG + PDF) and the gallery figures/README.md; the HTML report results/report.html.

FORMATION_FIGURES = [
    f"{F}/{stem}.{ext}" for stem in ("fig2_formation_T1000", "figB1_formation_T200_T500") for ext in ("png", "pdf")
]
STUDY_FIGURES_DONE = f"{W}/studies/figures.done"
GALLERY = f"{F}/README.md"
REPORT = f"{R}/report.html"
FIGURE_FILES = FORMATION_FIGURES + [DATA_FIGURE, STUDY_FIGURES_DONE, GALLERY]


rule formation_figures:
    input:
        truth=FORMATION_TRUTH,
        generated=list(FORMATION_GENERATED.values()),
    output:
        FORMATION_FIGURES,
    log:
        log("figures_formation"),
    params:
        generated=" ".join(f"{g}:{t}={path}" for (g, t), path in FORMATION_GENERATED.items()),
        mlff=EVAL["mlff"],
        out=output_dir,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen figures formation --truth {input.truth} --generated {params.generated}"
        " --mlff {params.mlff} --out {params.out} > {log} 2>&1"


rule study_figures:
    input:
        STUDY_RESULTS,
    output:
        touch(STUDY_FIGURES_DONE),
    log:
        log("figures_studies"),
    params:
        results=output_dir,
        out=F,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen studies figures --results {params.results} --out {params.out} > {log} 2>&1"


rule gallery:
    input:
        FORMATION_FIGURES,
        DATA_FIGURE,
        STUDY_FIGURES_DONE,
    output:
        GALLERY,
    log:
        log("figures_gallery"),
    params:
        figures=output_dir,
        intro=f"Figures of the `{RUN['profile']}` run ({RUN['description']}); redraw them with "
        f"`snakemake --cores all figures`.",
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen figures gallery --figures {params.figures} --intro {params.intro:q} > {log} 2>&1"


rule report:
    input:
        tables=RESULT_TABLES + STUDY_TABLES,
        provenance=PROVENANCE,
        claims=CLAIMS[0],
        gallery=GALLERY,
    output:
        REPORT,
    log:
        log("report"),
    params:
        results=output_dir,
        figures=lambda wildcards, input: os.path.dirname(input.gallery),
        title=f"DOSMatGen replication: {RUN['profile']} run",
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen figures report --results {params.results} --figures {params.figures}"
        " --provenance {input.provenance} --notes {input.claims} --title {params.title:q} --out {output} > {log} 2>&1"
