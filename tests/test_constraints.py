"""constraints.txt pins what CI and the docs' figures ran with: the README's install commands
use it, it covers every package the dev install brings, and the installed versions match it."""

from __future__ import annotations

import runpy
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from test_readme import quick_start

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
FREEZE = runpy.run_path(str(REPO / "scripts" / "freeze-constraints"))


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints.txt: {line!r} is not an exact pin"
            pins[req.name] = spec.version
    return pins


def drifted(text: str) -> list[str]:
    """'name: installed X, pinned Y' for every pin the environment does not match."""
    out = []
    for name, pinned in _pins(text).items():
        try:
            installed = Version(metadata.version(name)).public
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != pinned:
            out.append(f"{name}: installed {installed}, pinned {pinned}")
    return out


def test_installed_versions_match_the_constraints():
    drift = drifted(CONSTRAINTS.read_text())
    assert not drift, ("the environment drifted from constraints.txt (reinstall with "
                       "`pip install -e \".[dev]\" -c constraints.txt`, or after a deliberate upgrade run "
                       "scripts/freeze-constraints and rerun the docs' figures):\n" + "\n".join(drift))


def test_a_drifted_pin_is_caught():
    text = CONSTRAINTS.read_text()
    torch_pin = _pins(text)["torch"]
    planted = text.replace(f"torch=={torch_pin}\n", "torch==2.0.1\n")
    assert drifted(planted) == [f"torch: installed {torch_pin}, pinned 2.0.1"]
    assert drifted(text + "no-such-package-xyz==1.0\n") == ["no-such-package-xyz: installed not installed, pinned 1.0"]


def test_the_constraints_cover_every_package_the_dev_install_brings():
    # the closure is read from the installed metadata: a dependency added to pyproject.toml
    # without a pin (or a pin left for a dependency that went) makes this fail
    assert FREEZE["render"](FREEZE["closure"]()) == CONSTRAINTS.read_text(), \
        "constraints.txt is not the dev install's closure: run scripts/freeze-constraints"
    pins = _pins(CONSTRAINTS.read_text())
    for must in ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "math-verify", "deepspeed"):
        assert must in pins


def test_the_readme_installs_with_the_constraints():
    demo, tests = quick_start()
    for line in (demo, tests):
        assert "pip install torch==2.13.0 && pip install -e " in line
        assert " -c constraints.txt && " in line
    assert _pins(CONSTRAINTS.read_text())["torch"] == "2.13.0"
