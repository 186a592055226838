# Figures (PNG + PDF) and the gallery figures/README.md. The figures (PNG) are registered for
# Snakemake's report (`snakemake --report report.zip`; captions in workflow/report/).

FORMATION_FIGURES = [  # fig2 .png, .pdf, figB1 .png, .pdf
    f"{F}/{stem}.{ext}" for stem in ("fig2_formation_T1000", "figB1_formation_T200_T500") for ext in ("png", "pdf")
]
# The study figures as drawn (which ones depends on the studies run and on what they found), then
# copied beside the others in the figures folder.
STUDY_FIGURES = f"{W}/studies/figures"
GALLERY = f"{F}/README.md"
FIGURE_FILES = FORMATION_FIGURES + [DATA_FIGURE, STUDY_FIGURES, GALLERY]


rule formation_figures:
    input:
        truth=FORMATION_TRUTH,
        generated=list(FORMATION_GENERATED.values()),
    output:
        report(FORMATION_FIGURES[0], caption="../report/fig2.rst", category="Figures", subcategory="Formation energies"),
        FORMATION_FIGURES[1],
        report(FORMATION_FIGURES[2], caption="../report/figB1.rst", category="Figures", subcategory="Formation energies"),
        FORMATION_FIGURES[3],
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
        report(directory(STUDY_FIGURES), patterns=["{name}.png"], caption="../report/study_figures.rst",
               category="Figures", subcategory="Studies"),
    log:
        log("figures_studies"),
    params:
        results=output_dir,
        figures=F,
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "mkdir -p {output} {params.figures} && dosmatgen studies figures --results {params.results} --out {output}"
        " > {log} 2>&1 && cp -r {output}/. {params.figures}/"


rule gallery:
    input:
        FORMATION_FIGURES,
        DATA_FIGURE,
        STUDY_FIGURES,
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

