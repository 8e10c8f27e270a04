"""The set-up files agree with each other, and the commands the README promises exist."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def pyproject_requirements() -> dict[str, Requirement]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + meta["optional-dependencies"]["dev"]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in reqs}


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt must pin exactly: {line}"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def environment_specs() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    specs = {}
    for dep in env["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", item.strip())
            specs[canonicalize_name(m.group(1))] = m.group(2).replace(" ", "")
    return specs


def test_pins_cover_exactly_the_declared_dependencies_and_satisfy_them():
    declared, pins = pyproject_requirements(), pinned_versions()
    assert set(pins) == set(declared), "requirements.txt and pyproject.toml list different packages"
    for name, version in pins.items():
        assert declared[name].specifier.contains(version), f"{name}=={version} outside pyproject's {declared[name]}"


def test_ci_pins_the_torch_pair():
    pins = pinned_versions()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_environment_yml_matches_pyproject():
    declared, env = pyproject_requirements(), environment_specs()
    assert env.pop("python") == ">=3.11"
    env.pop("pip")
    assert set(env) == set(declared), (
        f"only in environment.yml: {sorted(set(env) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(env))}"
    )
    for name, spec in env.items():
        want = str(declared[name].specifier)
        assert spec == want, f"{name}: environment.yml {spec} vs pyproject {want}"


def test_python_floor_is_311_everywhere():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"] == ">=3.11"
    assert "(3, 11)" in (ROOT / "Makefile").read_text()


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```[a-z]*\n(.*?)```", readme, re.S).group(1)
    commands = [ln.strip() for ln in first_block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert commands == ["make lab", "make test"]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert re.search(r"^make test$", ci, re.M)


def make_dry_run(*args: str) -> str:
    out = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(), reason="needs the Makefile's .venv")
def test_make_reinstalls_only_when_pins_change():
    assert "pip install" not in make_dry_run("test")
    assert "pip install" in make_dry_run("-W", "requirements.txt", "test")
    assert "pip install" in make_dry_run("-W", "pyproject.toml", "lab")
    lab = make_dry_run("lab", "ARGS=--no-browser")
    assert re.search(r"jupyter lab --ServerApp.root_dir=labs (--allow-root )?--no-browser", lab)


def test_ruff_is_clean():
    paths = [p for p in ("course_utils", "tests", "benchmarks", "data_scripts", "notebook_src") if (ROOT / p).is_dir()]
    out = subprocess.run([str(BIN / "ruff"), "check", *paths], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_version_matches_pyproject():
    import course_utils

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert course_utils.__version__ == meta["version"]
    assert Version(meta["version"])


def lab_sources() -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((ROOT / "notebook_src").glob("[0-9][0-9]_*.py"))}


def test_every_lab_has_a_written_answer_and_the_instructor_guide_lists_each_one():
    answers = {(lab, m[1], int(m[2])) for lab, text in lab_sources().items()
               for m in re.finditer(r'^# %% \[markdown\] id="([^"]+)" role="answer" points=(\d+)$', text, re.M)}
    assert {lab for lab, _, _ in answers} == set(lab_sources()), "every lab needs a written answer graded by hand"
    guide = (ROOT / "docs" / "instructor.md").read_text()
    listed = {(m[1], m[2], int(m[3])) for m in re.finditer(r"^\| `(\d\d_\w+)` \| `([\w-]+)` \| (\d+) \|", guide, re.M)}
    assert listed == answers, (f"docs/instructor.md §4 lists {sorted(listed - answers)}, "
                               f"the labs hold {sorted(answers - listed)}")


def test_slide_map_points_at_sections_and_graded_cells_that_exist():
    sources = lab_sources()
    rows = [line for line in (ROOT / "docs" / "slides.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith(("| lecture", "|---"))]
    assert len(rows) >= 20
    for row in rows:
        _, taught, graded = [cell.strip() for cell in row.strip("|").split(" | ")]
        labs = re.findall(r"`(\d\d_\w+)`", row)
        for chunk in re.split(r"(?=`\d\d_\w+`)", taught):
            lab = re.match(r"`(\d\d_\w+)`", chunk)
            for number in re.findall(r"§(\d+)", chunk):
                assert lab and f"\n# ## {number}. " in sources[lab[1]], f"{row[:60]}...: no section {number} in {lab}"
        for cell_id in re.findall(r"`((?:test-[\w-]+)|(?:[\w]+-answer))`", graded):
            assert any(f'id="{cell_id}" role=' in sources[lab] for lab in labs), f"no graded cell {cell_id} in {labs}"
