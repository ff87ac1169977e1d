"""Documentation links hold: every Markdown file, and every source file named by its folder, that
the repository mentions is in it, and every ``make <target>`` the text mentions is defined in the
Makefile."""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: A path or file name ending in ``.md`` (not ``.mdx``), starting with a word character or ``/``.
MD_REFERENCE = re.compile(r"(?<![\w./-])(/?[\w.][\w./-]*\.md)(?![\w-])")
#: A source or docs path named from the repository root, e.g. ``src/clvflow/models/clv.py``.
ROOT_PATH_REFERENCE = re.compile(
    r"(?<![\w./-])((?:src|tests|training|docs)/[\w./-]*\.(?:py|md))(?![\w-])"
)
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
#: ``make <target>`` after a backtick or at the start of a (code-block) line.
MAKE_COMMAND = re.compile(r"(?:`|^[ \t]*(?:\$[ \t]+)?)make[ \t\n]+([A-Za-z][\w-]*)(=?)", re.M)
MAKE_RULE = re.compile(r"^([A-Za-z][\w.-]*(?:[ \t]+[A-Za-z][\w.-]*)*)[ \t]*:(?!=)", re.M)


def repo_files(root: Path) -> list[str]:
    """Files of the checkout at ``root``: tracked, plus untracked ones git does not ignore."""
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip(f"{root} is not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def _text(root: Path, name: str) -> str | None:
    try:
        return (root / name).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary data (e.g. the gzipped CDNOW log)


def missing_references(root: Path) -> list[str]:
    """``file:line: reference`` for every ``*.md`` mention, and every ``src/``, ``tests/``,
    ``training/`` or ``docs/`` path of a ``.py`` or ``.md`` file, that names no file of the
    repository.

    A reference with a folder resolves from the repository root or from the mentioning file's
    folder (a leading ``/`` means the root); a bare file name must be the name of some file.
    """
    files = repo_files(root)
    known = set(files)
    basenames = {posixpath.basename(f) for f in files}
    problems = []
    for name in files:
        text = _text(root, name)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            line = URL.sub(" ", line)
            refs = dict.fromkeys(MD_REFERENCE.findall(line) + ROOT_PATH_REFERENCE.findall(line))
            for ref in refs:
                if "/" not in ref.strip("/"):
                    ok = ref.strip("/") in basenames
                else:
                    candidates = {
                        posixpath.normpath(ref.lstrip("/")),
                        posixpath.normpath(posixpath.join(posixpath.dirname(name), ref)),
                    }
                    ok = bool(candidates & known)
                if not ok:
                    problems.append(f"{name}:{lineno}: {ref}")
    return problems


def make_targets(makefile: Path) -> set[str]:
    """Targets the Makefile defines (explicit rules; ``.PHONY`` and variables are not targets)."""
    targets = set()
    for match in MAKE_RULE.finditer(makefile.read_text()):
        targets.update(match.group(1).split())
    return targets


def undefined_make_targets(root: Path) -> list[str]:
    """``file: make <target>`` for every mentioned target the Makefile does not define."""
    defined = make_targets(root / "Makefile")
    problems = []
    for name in repo_files(root):
        if name == "Makefile":
            continue
        text = _text(root, name)
        if text is None:
            continue
        for target, assignment in MAKE_COMMAND.findall(text):
            if not assignment and target not in defined:
                problems.append(f"{name}: make {target}")
    return sorted(set(problems))


def _git_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


# ---- the repository ---------------------------------------------------------------------------


def test_every_document_and_source_path_mentioned_is_in_the_repository():
    """Issue 13 item 3: no reference to a document that is not in the repository (the code
    pointed at upper-case EVALUATION, ARCHITECTURE and MLFLOW documents under docs/ that were
    never in it)."""
    assert missing_references(ROOT) == []


def test_every_make_target_mentioned_is_defined():
    """Issue 13 item 3: README, docs and docstrings mention only ``make`` targets that exist."""
    defined = make_targets(ROOT / "Makefile")
    assert {"run", "test", "bench", "ceiling"} <= defined
    assert undefined_make_targets(ROOT) == []


def test_the_project_docs_exist():
    """Issue 13 item 3: the evaluation, architecture and MLflow docs are in the repository."""
    for name in ("evaluation", "architecture", "mlflow", "model-research", "benchmarks"):
        assert (ROOT / "docs" / (name + ".md")).is_file(), name


# ---- the checks themselves, on small repositories --------------------------------------------


def test_missing_reference_is_reported_with_file_and_line(tmp_path):
    """Issue 13 item 3: a mention of an absent document or source file is caught, present ones
    (from the root, from the mentioning file's folder, or by bare name) are not."""
    md, src = ".md", "src"  # split so that this file mentions none of these paths itself
    root = _git_repo(
        tmp_path,
        {
            f"docs/guide{md}": f"See ../README{md}, [setup](setup{md}) and {src}/a.py.\n",
            f"docs/setup{md}": "# setup\n",
            f"README{md}": f"Read docs/guide{md}; the code is {src}/gone.py.\n",
            f"{src}/a.py": f'"""As in docs/EVALUATION{md}; see https://x.org/NOTES{md}."""\n',
            f"{src}/b.py": f"# outside: /work/shared/docs/MLFLOW{md}\n# case: docs/Guide{md}\n",
        },
    )
    assert missing_references(root) == [
        f"README{md}:1: {src}/gone.py",
        f"{src}/a.py:1: docs/EVALUATION{md}",
        f"{src}/b.py:1: /work/shared/docs/MLFLOW{md}",
        f"{src}/b.py:2: docs/Guide{md}",
    ]


def test_undefined_make_target_is_reported(tmp_path):
    """Issue 13 item 3: ``make`` targets in backticks or code lines are checked against the
    Makefile's rules; variables and prose are not targets."""
    makefile = ".PHONY: run lint\nVENV := .venv\nrun lint: venv\n\t@echo hi\nvenv:\n\ttrue\n"
    readme = (
        "```bash\nmake run\n$ make lint\nmake deploy\n```\n"
        "Then `make\nbench`, or `make PYTHON=python3.11 venv`; make sure it works.\n"
    )
    md = ".md"
    root = _git_repo(tmp_path, {"Makefile": makefile, f"README{md}": readme})
    assert make_targets(root / "Makefile") == {"run", "lint", "venv"}
    assert undefined_make_targets(root) == [
        "README" + ".md: make bench",
        "README" + ".md: make deploy",
    ]
