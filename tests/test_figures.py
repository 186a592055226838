"""Formation-energy figures, the gallery and the output checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dosmatgen.cli import main
from dosmatgen.errors import DataError
from dosmatgen.plots.formation import common_bins, load_formation, plot_fig2, plot_figB1
from dosmatgen.plots.gallery import gallery_entries, write_gallery
from dosmatgen.plots.style import read_png_caption
from dosmatgen.plots.check import check_file, check_outputs


def _sets(seed: int = 0):
    rng = np.random.default_rng(seed)
    generated = {}
    for guidance, shift in (("cfg", 0.0), ("classifier", 0.7)):
        for t0 in (200, 500, 1000):
            unrelaxed = rng.normal(-0.4 + shift, 0.6, 40)
            relaxed = unrelaxed - 0.3
            relaxed[:2] = np.nan  # failed relaxations
            generated[(guidance, t0)] = {"unrelaxed": unrelaxed, "relaxed": relaxed}
    truth = {"relaxed": rng.normal(-1.0, 0.5, 50)}
    return generated, truth


@pytest.fixture(scope="module")
def figure_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    generated, truth = _sets()
    plot_fig2(generated, truth, out, mlff="SevenNet")
    plot_figB1(generated, truth, out, mlff="SevenNet")
    return out


def test_formation_figures_written_as_png_and_pdf_with_captions(figure_dir):
    for stem in ("fig2_formation_T1000", "figB1_formation_T200_T500"):
        png, pdf = figure_dir / f"{stem}.png", figure_dir / f"{stem}.pdf"
        assert check_file(png) == [] and check_file(pdf) == []
        title, caption = read_png_caption(png)
        assert "eV/atom" in caption and "SevenNet" in caption
    assert read_png_caption(figure_dir / "fig2_formation_T1000.png")[0].startswith("Fig. 2")
    from PIL import Image

    with Image.open(figure_dir / "figB1_formation_T200_T500.png") as im:  # two rows of panels
        w, h = im.size
    with Image.open(figure_dir / "fig2_formation_T1000.png") as im:
        assert im.size[1] < h and abs(im.size[0] - w) < 0.2 * w


def test_missing_combination_and_empty_sets_still_draw(tmp_path):
    generated, _ = _sets()
    only_cfg = {("cfg", 1000): generated[("cfg", 1000)]}
    paths = plot_fig2(only_cfg, None, tmp_path)
    assert all(p.exists() for p in paths)
    all_failed = {("cfg", 1000): {"relaxed": np.full(3, np.nan)}}
    assert all(p.exists() for p in plot_fig2(all_failed, {"unrelaxed": np.array([])}, tmp_path, stem="empty"))


def test_common_bins_ignore_outliers_and_nan():
    values = np.concatenate([np.linspace(-2, 1, 200), [np.nan, 500.0]])
    edges = common_bins([values])
    assert edges[0] < -2 + 0.5 and edges[-1] < 10
    assert np.all(np.diff(edges) > 0)
    assert len(common_bins([np.array([np.nan])])) > 2


def test_load_formation_reads_csv_and_json_rows(tmp_path):
    csv_path = tmp_path / "f.csv"
    csv_path.write_text("id,status,ef_unrelaxed,ef_relaxed\na,ok,-1.0,-1.5\nb,relax_failed,0.2,\n")
    got = load_formation(csv_path)
    np.testing.assert_allclose(got["unrelaxed"], [-1.0, 0.2])
    assert got["relaxed"][0] == -1.5 and np.isnan(got["relaxed"][1])
    json_path = tmp_path / "f.json"
    json_path.write_text(json.dumps({"format": "dosmatgen-formation", "rows": [
        {"id": "a", "ef_unrelaxed": -1.0, "ef_relaxed": None}, {"id": "b", "ef_unrelaxed": 0.5, "ef_relaxed": 0.1}]}))
    got = load_formation(json_path)
    assert np.isnan(got["relaxed"][0]) and got["unrelaxed"][1] == 0.5
    (tmp_path / "bad.csv").write_text("id,energy\na,1\n")
    with pytest.raises(DataError, match="no formation-energy column"):
        load_formation(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="does not exist"):
        load_formation(tmp_path / "none.csv")


def test_gallery_lists_figures_in_paper_order(figure_dir, tmp_path):
    entries = gallery_entries(figure_dir)
    assert [e["stem"] for e in entries] == ["fig2_formation_T1000", "figB1_formation_T200_T500"]
    readme = write_gallery(figure_dir, tmp_path / "README.md", intro="hello")
    text = readme.read_text()
    assert "hello" in text and "![Fig. 2" in text and "(fig2_formation_T1000.pdf)" in text
    assert text.index("Fig. 2") < text.index("Fig. B.1")


def test_check_file_catches_malformed_outputs(tmp_path, figure_dir):
    cases = {
        "nan.csv": "a,b\n1,NaN\n", "ragged.csv": "a,b\n1\n", "header.csv": "a,b\n",
        "nan.json": '{"x": NaN}', "broken.json": '{"x": ', "nan.md": "| a |\n|---|\n| nan |\n",
        "cut.pdf": "%PDF-1.4 no trailer", "empty.csv": "",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert check_file(tmp_path / name), name
    png = (figure_dir / "fig2_formation_T1000.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 3])
    assert check_file(tmp_path / "cut.png")
    n, problems = check_outputs([figure_dir], required=[tmp_path / "absent.csv"])
    assert n == 5 and problems == [f"{tmp_path / 'absent.csv'}: missing"]


def test_figures_cli(tmp_path, capsys):
    rows = [{"id": str(i), "ef_unrelaxed": float(i) / 10, "ef_relaxed": float(i) / 10 - 0.2} for i in range(-5, 5)]
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"rows": rows}))
    out = tmp_path / "figs"
    assert main(["figures", "formation", "--truth", str(f), "--generated", f"cfg:1000={f}", f"classifier:200={f}",
                 "--out", str(out)]) == 0
    assert main(["figures", "gallery", "--figures", str(out)]) == 0
    assert (out / "README.md").exists() and (out / "figB1_formation_T200_T500.pdf").exists()
    assert main(["figures", "check", str(out)]) == 0
    assert main(["figures", "formation", "--generated", "cfg=oops", "--out", str(out)]) == 2
    assert "GUIDANCE:T=FILE" in capsys.readouterr().err


def test_figures_share_one_seaborn_style_set_only_while_drawing(tmp_path):
    """Every figure is drawn inside figure_style (seaborn ticks/paper theme, legible fonts, width
    capped); importing the plots modules changes no rcParams (negative control: a fresh interpreter)."""
    import subprocess
    import sys

    import matplotlib as mpl

    from dosmatgen.plots import formation, style

    probe = ("import matplotlib as mpl; before = dict(mpl.rcParams); "
             "import dosmatgen.plots.style, dosmatgen.plots.formation, dosmatgen.plots.studies, seaborn; "
             "print(sorted(k for k, v in mpl.rcParams.items() if before[k] != v))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
    seen = {}
    real = formation.formation_panel

    def spy(ax, *args, **kwargs):
        seen.update(font=mpl.rcParams["font.size"], legend=mpl.rcParams["legend.fontsize"],
                    spine=mpl.rcParams["axes.spines.right"], width=ax.figure.get_figwidth())
        return real(ax, *args, **kwargs)

    generated, truth = _sets()
    before = dict(mpl.rcParams)
    formation.formation_panel = spy
    try:
        plot_fig2(generated, truth, tmp_path)
    finally:
        formation.formation_panel = real
    assert seen["font"] >= 10 and seen["legend"] >= 9 and seen["spine"] is False
    assert seen["width"] <= style.MAX_WIDTH
    assert dict(mpl.rcParams) == before  # restored after the figure
    assert mpl.rcParams["font.size"] != seen["font"]  # so the style was not already the default


def test_dataset_figures_are_drawn_in_the_one_style(tmp_path, monkeypatch):
    """`data info`'s two figures (plots/dataset.py) go through figure_style and new_figure, at most
    MAX_WIDTH wide; negative control: a figure drawn outside the style has the default font."""
    import matplotlib as mpl
    import numpy as np

    from dosmatgen.data.info import dataset_summary
    from dosmatgen.data.schema import CrystalRecord
    from dosmatgen.plots import dataset, style

    records = [CrystalRecord(f"x{i}", [8, 12 + i], [[0, 0, 0], [.5, .5, .5]], np.eye(3) * 3, np.ones((2, 400)),
                             {"source": "prototypes" if i else "mp20"}) for i in range(2)]
    seen = []
    real_save = dataset._save

    def spy(fig, out_path):
        seen.append((mpl.rcParams["font.size"], mpl.rcParams["axes.spines.right"], fig.get_figwidth()))
        real_save(fig, out_path)

    monkeypatch.setattr(dataset, "_save", spy)
    dataset.plot_dataset_figure(dataset_summary(records), tmp_path / "d.png")
    dataset.plot_site_dos(records[0], "Mg", tmp_path / "s.svg")
    assert (tmp_path / "d.png").stat().st_size > 0 and (tmp_path / "s.svg").stat().st_size > 0
    assert all(font >= 10 and spine is False and width <= style.MAX_WIDTH for font, spine, width in seen)
    assert len(seen) == 2 and mpl.rcParams["font.size"] != seen[0][0]


@pytest.mark.parametrize("floor, passing", [(-5.0, 2), (None, 3)])
def test_fig7_pass_count_leaves_out_mlff_blow_ups(tmp_path, monkeypatch, floor, passing):
    """Fig. 7's legend counts the crystals that pass the threshold as the screening does: a relaxed
    E_f below the plausibility floor is an MLFF blow-up, not a pass (negative control: no floor)."""
    from dosmatgen.plots import studies

    res = {"formation": {"ef_unrelaxed": [1.0, 2.0, 0.5, 3.0], "ef_relaxed": [-8.0, -2.0, -1.6, 0.2],
                         "threshold": -1.5, "mlff": "sevenn"},
           "config": {} if floor is None else {"min_plausible_ef": floor}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    labels: list[str] = []

    def spy(fig, out_dir, stem, **kw):
        labels.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return []

    monkeypatch.setattr(studies, "save_figure", spy)
    studies.plot_fig7(path, tmp_path)
    assert f"threshold -1.5 eV/atom ({passing} pass)" in labels
    assert any("blow-ups" in t and "(1)" in t for t in labels) == (floor is not None)


def test_structure_drawing_carries_an_element_key():
    """A drawn crystal gets one legend entry per element, in order of first appearance; a missing
    structure gets none (negative control)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dosmatgen.plots.studies import draw_structure

    nacl = {"atomic_numbers": [11, 17, 11, 17], "frac_coords": [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0, 0, 0.5]],
            "lattice": [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]}
    fig, (a, b) = plt.subplots(1, 2)
    draw_structure(a, nacl)
    draw_structure(b, None)
    assert [t.get_text() for t in a.get_legend().get_texts()] == ["Na", "Cl"]
    assert b.get_legend() is None
    plt.close(fig)
