# Data: the dataset store (built-in GPAW set, Materials Project with MP_API_KEY, or the authors'
# train/val/test.json), the split (seeded 0.6/0.2/0.2, or the authors' as given) with the DOS
# standardiser (fitted on the training atoms, or the authors' prop_scaler.pt), a dataset summary.

AUTHORS = RUN["data"]["source"] == "authors"
if RUN["data"]["source"] == "mp":
    STORE = f"{W}/data/mp_dos.npz"
elif AUTHORS:
    STORE = f"{W}/data/authors_dos.npz"
else:
    STORE = RUN["data"]["builtin_store"]
SPLIT = f"{W}/data/split.json"
# the ids the built-in store's split is fixed on (crystals merged later train only), if configured
SPLIT_IDS = RUN["data"]["builtin_split_ids"] if STORE == RUN["data"]["builtin_store"] else None
# The authors' release brings its own DOS standardiser (prop_scaler.pt): nothing is refitted.
STANDARDISER = f"{W}/models/diffusion/standardiser.json" if AUTHORS else f"{W}/data/standardiser.json"
DATA_INFO = f"{W}/data/info.json"
DATA_INFO_TEXT = f"{R}/data_info.txt"  # the summary docs/data.md shows
DATA_FIGURE = f"{F}/dataset_overview.png"
DATA_FILES = [STORE, SPLIT, STANDARDISER, DATA_INFO, DATA_INFO_TEXT, DATA_FIGURE]


if RUN["data"]["source"] == "mp":

    rule download_mp:
        output:
            STORE,
        log:
            log("download_mp"),
        params:
            shards=f"{W}/data/mp_shards",  # resumable: finished shards survive an interruption
        threads: 1
        resources:
            mem_mb=8000,
            runtime=48 * 60,
        conda:
            CONDA_ENV
        shell:
            "dosmatgen data download-mp --out {params.shards} --merge {output} --no-progress > {log} 2>&1"


if AUTHORS:

    rule import_authors_data:
        output:
            store=STORE,
            split=SPLIT,
        log:
            log("import_authors_data"),
        params:
            data=RUN["authors"]["data"],
        threads: 1
        resources:
            **SMALL,
        conda:
            CONDA_ENV
        shell:
            "dosmatgen data import-json --dir {params.data:q} --out {output.store} --split-out {output.split}"
            " > {log} 2>&1"

else:

    rule split:
        input:
            store=STORE,
            base_ids=SPLIT_IDS or [],
        output:
            split=SPLIT,
            standardiser=STANDARDISER,
        log:
            log("split"),
        params:
            seed=RUN["seed"],
            fractions=" ".join(str(f) for f in RUN["data"]["split"]),
            source_fractions=" ".join(f"--source-fractions {source}={','.join(str(f) for f in frac)}"
                                      for source, frac in RUN["data"]["source_split"].items()),
            base_ids=f"--base-ids {SPLIT_IDS}" if SPLIT_IDS else "",
        threads: 1
        resources:
            **SMALL,
        conda:
            CONDA_ENV
        shell:
            "dosmatgen data split --store {input.store} --out {output.split} --standardiser {output.standardiser}"
            " --seed {params.seed} --fractions {params.fractions} {params.source_fractions} {params.base_ids}"
            " > {log} 2>&1"


rule data_info:
    input:
        store=STORE,
    output:
        json=DATA_INFO,
        text=report(DATA_INFO_TEXT, caption="../report/data_info.rst", category="Data"),
        figure=report(DATA_FIGURE, caption="../report/dataset_overview.rst", category="Data"),
    log:
        log("data_info"),
    threads: 1
    resources:
        **SMALL,
    conda:
        CONDA_ENV
    shell:
        "dosmatgen data info --store {input.store} --json {output.json} --text {output.text}"
        " --figure {output.figure} > {log} 2>&1"
