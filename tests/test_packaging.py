"""Packaging: the wheel carries every file the package reads, one version everywhere, a commit in
an installed copy's provenance, help text on every option, and the project's paperwork."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IN_GIT = shutil.which("git") is not None and (ROOT / ".git").exists()


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _working_tree_files() -> list[str]:
    """The project's files as a build sees them: tracked or untracked, never the ignored ones
    (build outputs, caches, the generated spdnn/_version.py), relative to ROOT."""
    if IN_GIT:
        names = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
        return sorted(n for n in names if n and (ROOT / n).is_file())
    skip = {".git", "build", "__pycache__", ".pytest_cache", ".hypothesis", ".snakemake"}
    return sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and not p.name.endswith(".egg-info")
    )


def package_data_files() -> list[str]:
    """Every non-Python file in the package's source tree (kernels, data, model files, ...): the
    files it reads at run time. Derived from the tree, so a new one must be packaged too."""
    return [
        n
        for n in _working_tree_files()
        if n.startswith("spdnn/") and not n.endswith((".py", ".pyc")) and n != "spdnn/_version.py"
    ]


def package_modules() -> list[str]:
    return [n for n in _working_tree_files() if n.startswith("spdnn/") and n.endswith(".py")]


# --- the command line --------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, name: str):
    """`parser` and every subcommand's parser below it, with their command names."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for sub_name, sub in action.choices.items():
                assert helps.get(sub_name), f"'{name} {sub_name}' has no help in the command list"
                yield from _parsers(sub, f"{name} {sub_name}")


def _all_parsers():
    from spdnn.cli import build_parser
    from spdnn.fetch import build_parser as fetch_parser

    yield from _parsers(build_parser(), "spdnn")
    yield from _parsers(fetch_parser(), "python -m spdnn.fetch")


def test_every_cli_option_has_help():
    missing, seen = [], 0
    for name, parser in _all_parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            seen += 1
            label = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS or not str(action.help).strip():
                missing.append(f"{name} {label}")
    assert seen > 100  # the walk reached the subcommands (dag, model, ...)
    assert not missing, "options without help: " + ", ".join(missing)


def test_every_help_renders():
    """Help strings are %-formatted by argparse: a stray '%' would break `--help`."""
    for name, parser in _all_parsers():
        assert parser.format_help(), name


def test_version_option_prints_the_installed_version():
    out = subprocess.run(
        [sys.executable, "-m", "spdnn", "--version"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    import spdnn

    assert out == f"spdnn {spdnn.__version__}"
    try:
        installed = importlib.metadata.version("spdnn")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("spdnn is not installed (pip install -e .)")
    assert out == f"spdnn {installed}", "spdnn/_version.py and the installed metadata differ: pip install -e ."


def test_built_commit_from_the_version_file(monkeypatch):
    """setuptools-scm's version file: __commit_id__ where it writes one, else the local version's
    g<hash>; '.dYYYYMMDD' (a dirty tree at build time) gives '+dirty'."""
    import types

    from spdnn import provenance

    def version_file(version, commit=None):
        module = types.SimpleNamespace(__version__=version)
        if commit is not None:
            module.__commit_id__ = commit
        monkeypatch.setitem(sys.modules, "spdnn._version", module)
        monkeypatch.setattr(sys.modules["spdnn"], "_version", module, raising=False)

    version_file("0.1.1.dev3+g1a2b3c4d5", "g1a2b3c4d5")
    assert provenance.built_commit() == "1a2b3c4d5"
    version_file("0.1.1.dev3+g1a2b3c4.d20261202")
    assert provenance.built_commit() == "1a2b3c4+dirty"
    version_file("0.1.0")
    assert provenance.built_commit() is None
    version_file("0.1.0", None)
    assert provenance.built_commit() is None


# --- the project's paperwork -------------------------------------------------------------------


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_file_matches_pyproject():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the spdnn developers" in text


def test_one_version_source():
    pyproject = _pyproject()
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    scm = pyproject["tool"]["setuptools_scm"]
    assert scm["version_file"] == "spdnn/_version.py" and scm["fallback_version"]
    assert any(r.startswith("setuptools-scm") for r in pyproject["build-system"]["requires"])
    assert "/spdnn/_version.py" in (ROOT / ".gitignore").read_text().splitlines()
    assert not re.search(r"__version__\s*=\s*['\"]\d+\.\d+", (ROOT / "spdnn/__init__.py").read_text())


def _releases() -> list[tuple[str, str]]:
    """(version, date) of CHANGELOG.md's released sections, newest first."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_changelog_has_unreleased_and_releases():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    assert _releases(), "no '## [X.Y.Z] - YYYY-MM-DD' section"


def test_citation_cff():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # CFF 1.2.0's required keys
        assert cff.get(key), key
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])
    version, date = _releases()[0]
    assert str(cff["version"]) == version and str(cff["date-released"]) == date  # the latest release
    assert cff["license"] == _pyproject()["project"]["license"]
    (paper,) = [r for r in cff["references"] if "Graph Challenge" in r["title"]]
    assert paper["type"] == "conference-paper" and paper["year"] == 2019
    assert paper["authors"][0]["family-names"] == "Kepner"
    assert "HPEC" in paper["collection-title"]


# --- the wheel ---------------------------------------------------------------------------------


def _source_copy(dst: Path) -> Path:
    """The working tree as it is, with its git history where it has one (so setuptools-scm finds
    the same version and commit), in `dst`: the build writes spdnn/_version.py there, not here."""
    if IN_GIT:
        subprocess.run(["git", "clone", "-q", "--shared", str(ROOT), str(dst)], check=True)
        for gone in set(_git("ls-files", cwd=dst).splitlines()) - set(_working_tree_files()):
            (dst / gone).unlink(missing_ok=True)  # deleted here, not yet committed
    for name in _working_tree_files():
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (path,) = (tmp / "dist").glob("spdnn-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_every_package_file(wheel):
    members = set(zipfile.ZipFile(wheel).namelist())
    data = package_data_files()
    assert {"spdnn/model/hardware.json", "spdnn/engines/kernels/spdnn_layer.cu"} <= set(data)
    assert not [f for f in data if f not in members], "package files missing from the wheel (pyproject's package-data)"
    assert not [m for m in package_modules() if m not in members]
    assert "spdnn/_version.py" in members
    assert not [m for m in members if m.startswith(("tests/", "benchmarks/", "docs/"))]
    (licence,) = [m for m in members if m.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(licence) == (ROOT / "LICENSE").read_bytes()


@pytest.mark.slow
def test_installed_wheel_runs_and_records_its_commit(wheel, tmp_path):
    """The wheel unpacked (a pure-Python wheel installs as exactly these files) and used in place
    of the checkout: one version everywhere, the model's files found, a commit in provenance."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "SPDNN_COMMIT"}
    env["PYTHONPATH"] = str(site)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    wheel_version = wheel.name.split("-")[1]
    probe = json.loads(
        run(
            "-c",
            "import importlib.metadata, json, spdnn, spdnn.provenance as p; print(json.dumps("
            "[spdnn.__file__, spdnn.__version__, importlib.metadata.version('spdnn'), p.git_commit()]))",
        )
    )
    assert Path(probe[0]).is_relative_to(site)
    assert probe[1] == probe[2] == wheel_version
    assert run("-m", "spdnn", "--version").strip() == f"spdnn {wheel_version}"
    if IN_GIT:
        head = _git("rev-parse", "HEAD").strip()
        commit = probe[3] or ""
        assert re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", commit) and head.startswith(commit.split("+")[0]), commit

    predicted = json.loads(
        run("-m", "spdnn", "model", "predict", "--neurons", "1024", "--layers", "120", "--preset", "h200")
    )
    assert predicted["valid"] and predicted["seconds"] > 0
    tuned = json.loads(run("-m", "spdnn", "model", "tune", "--neurons", "1024", "--layers", "120", "--gpu", ""))
    assert tuned["engine_options"]
