"""The documents a newcomer reads (issue 33, item 6) hold together.

- every relative link in README.md, ARCHITECTURE.md, docs/, experiments/ and results/README.md
  resolves to a file or folder of the repository (the part after ``#`` is not checked; http(s)
  and mail links are skipped; links inside code are not links);
- every repository file and function the documents name in code spans (``dosmatgen/...py``,
  ``dosmatgen/x.py:Class.method``, ``scripts/...``, ``experiments/...``, ``tests/...``) exists;
- README.md is the front door: at most 250 lines, the two newcomer commands first;
- no document cites "DESIGN §" (a file outside the repository).

Each check is a function tried on a made-up document as a negative control.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_COMMANDS = (
    "bash scripts/setup.sh && .venv/bin/snakemake --cores all --forceall tables",
    'bash scripts/setup.sh && .venv/bin/python -m pytest -q -m "not slow"',
)

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
CODE_REF = re.compile(r"`((?:dosmatgen|scripts|experiments|tests)/[^`\s:]+)(?::([A-Za-z_][\w.]*))?`")


def documents() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "results" / "README.md"]
    docs += sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "experiments").rglob("*.md"))
    return docs


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links and images of ``text`` that point into the repository, without
    their ``#anchor``: inline and reference-style, outside code; http(s), mailto and pure anchors skipped."""
    body = prose(text)
    targets = LINK.findall(CODE_SPAN.sub("", body)) + REFERENCE.findall(body)
    out = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def broken_links(doc: Path) -> list[str]:
    return [t for t in relative_links(doc.read_text(encoding="utf-8")) if not (doc.parent / t).exists()]


def test_every_relative_link_resolves():
    docs = documents()
    assert len(docs) >= 15 and (ROOT / "docs" / "method.md") in docs
    broken = {d.relative_to(ROOT).as_posix(): broken_links(d) for d in docs if broken_links(d)}
    assert broken == {}
    assert sum(len(relative_links(d.read_text(encoding="utf-8"))) for d in docs) > 50  # the check saw links


def test_a_broken_link_is_found(tmp_path):
    """Negative control: a link and an image to missing files are found; good, external, anchor-only
    and code links are not."""
    (tmp_path / "here.md").write_text("x\n")
    (tmp_path / "sub").mkdir()
    doc = tmp_path / "page.md"
    doc.write_text(
        "See [here](here.md#part), [the folder](sub/), [away](https://example.org/x.md), [top](#top),\n"
        "[missing](docs/nowhere.md) and ![figure](figures/none.png \"a title\").\n"
        "[ref]: missing_ref.md\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[in a code block](nowhere_either.md)\n```\n")
    assert broken_links(doc) == ["docs/nowhere.md", "figures/none.png", "missing_ref.md"]


def _qualname_defined(tree: ast.Module, qualname: str) -> bool:
    scope: list[ast.stmt] = tree.body
    for part in qualname.split("."):
        found = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.name == part), None)
        if found is None:
            found = next((n for n in scope if isinstance(n, (ast.Assign, ast.AnnAssign)) and part in
                          {t.id for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                           if isinstance(t, ast.Name)}), None)
            return found is not None and part == qualname.split(".")[-1]
        scope = getattr(found, "body", [])
    return True


def missing_code_refs(text: str, root: Path) -> list[str]:
    """``path`` and ``path:qualname`` code spans (under dosmatgen/, scripts/, experiments/, tests/)
    whose file, or whose function / class / constant in that file, does not exist."""
    missing = []
    for path, qualname in CODE_REF.findall(text):
        path = path.rstrip(".,;")
        if any(c in path for c in "*{}<>$"):
            continue
        file = root / path
        if not file.exists():
            missing.append(path)
        elif qualname and (file.suffix != ".py" or not _qualname_defined(ast.parse(file.read_text(encoding="utf-8")),
                                                                          qualname)):
            missing.append(f"{path}:{qualname}")
    return missing


def test_files_and_functions_named_in_the_documents_exist():
    missing = {d.relative_to(ROOT).as_posix(): missing_code_refs(d.read_text(encoding="utf-8"), ROOT)
               for d in documents()}
    assert {d: m for d, m in missing.items() if m} == {}
    method = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    assert len(CODE_REF.findall(method)) >= 30  # the equations are mapped to code
    for eq in [f"A{i}" for i in range(1, 12)] + ["Eq. 2", "Eq. 3"]:
        assert re.search(rf"\b{re.escape(eq)}\b", method), eq


def test_a_missing_file_or_function_is_found(tmp_path):
    """Negative control on a made-up package file."""
    (tmp_path / "dosmatgen").mkdir()
    (tmp_path / "dosmatgen" / "m.py").write_text("X = 1\nclass A:\n    def f(self):\n        pass\ndef g():\n    pass\n")
    text = ("`dosmatgen/m.py:A.f`, `dosmatgen/m.py:g`, `dosmatgen/m.py:X`, `dosmatgen/m.py`, "
            "`dosmatgen/m.py:A.h`, `dosmatgen/m.py:h`, `dosmatgen/gone.py`, `scripts/gone.sh`, `results/*.md`")
    assert missing_code_refs(text, tmp_path) == ["dosmatgen/m.py:A.h", "dosmatgen/m.py:h", "dosmatgen/gone.py",
                                                 "scripts/gone.sh"]


def front_door_problems(readme: str) -> list[str]:
    """Why ``readme`` is not the front door: too long, or not opening with the two newcomer commands."""
    problems = []
    lines = readme.splitlines()
    if len(lines) > 250:
        problems.append(f"{len(lines)} lines (at most 250)")
    fence = [i for i, line in enumerate(lines[:12]) if line.startswith("```")]
    first = lines[fence[0] + 1:fence[1]] if len(fence) >= 2 else []
    if len(first) != 2 or not all(line.startswith(cmd) for line, cmd in zip(first, README_COMMANDS)):
        problems.append("the first code block is not the two newcomer commands")
    return problems


def test_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert front_door_problems(readme) == []
    # CI runs the README's test command (.ci/run says: keep in sync with README.md)
    test_command = README_COMMANDS[1].split("&& ", 1)[1]
    assert test_command in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_a_long_readme_or_one_without_the_commands_is_found():
    """Negative control."""
    good = "# x\n\n```bash\n" + "\n".join(c + "  # comment" for c in README_COMMANDS) + "\n```\n"
    assert front_door_problems(good) == []
    assert front_door_problems(good + "line\n" * 250) == ["256 lines (at most 250)"]
    assert front_door_problems("# x\n\n```bash\npip install x\n```\n") == [
        "the first code block is not the two newcomer commands"]


def test_no_document_cites_a_design_file_outside_the_repository():
    assert [d.relative_to(ROOT).as_posix() for d in documents() if "DESIGN §" in d.read_text(encoding="utf-8")] == []
