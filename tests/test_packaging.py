"""The package: pyproject.toml (layout, Python floor, console entry points, extras), requirements.txt in
step with it, Triton imported only where a Triton kernel runs, and an editable install in a fresh
virtual environment whose commands and recorded `_target_`s work from another directory.

    python -m pytest -q tests/test_packaging.py -p no:cacheprovider        (about 50 s on 2 cores; -m 'not slow': 15 s)

The fresh environment is `python -m venv --system-site-packages --without-pip` (the machine's
packages and pip, so nothing is downloaded) + `pip install -e . --no-deps --no-build-isolation`.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SCRIPTS = PROJECT["scripts"]
NOT_SHIPPED = {"tests", "docs", "outputs"}  # top-level folders that are not part of the package
GPU_STACK = {"torch", "triton"}  # plus every nvidia-* CUDA wheel


def run(cmd: list[str], cwd: Path, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def requirements(extra: str | None) -> list[Requirement]:
    """The requirements of the base install (None) or of one extra, self-references (lrsched[...]) expanded."""
    reqs = [Requirement(r) for r in (PROJECT["dependencies"] if extra is None
                                     else PROJECT["optional-dependencies"][extra])]
    out = []
    for r in reqs:
        if canonicalize_name(r.name) == canonicalize_name(PROJECT["name"]):
            out += [x for e in sorted(r.extras) for x in requirements(e)]
        else:
            out.append(r)
    return out


# ---- pyproject.toml ------------------------------------------------------------------------------

def test_python_floor_admits_this_interpreter_and_rejects_3_10():
    floor = SpecifierSet(PROJECT["requires-python"])
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in floor
    assert "3.10" not in floor  # training/checkpoint.py uses hashlib.file_digest (3.11)
    import hashlib
    assert hasattr(hashlib, "file_digest")


def test_every_top_level_code_folder_is_shipped_and_nothing_else():
    """The layout stays flat: each top-level folder holding code (found on disk, not listed here) is
    matched by the package include patterns, as is configs/ (Hydra's package data); tests/ is not."""
    from setuptools import find_namespace_packages

    find = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_namespace_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ())))
    code_dirs = {p.parent.relative_to(ROOT).parts[0] for p in ROOT.glob("*/**/*.py")} - NOT_SHIPPED
    assert code_dirs <= shipped, f"not packaged: {sorted(code_dirs - shipped)}"
    assert "configs" in shipped and "configs.schedule" in shipped
    assert not {p.split(".")[0] for p in shipped} & NOT_SHIPPED
    assert not [p for p in shipped if "__pycache__" in p]
    assert PYPROJECT["tool"]["setuptools"]["py-modules"] == ["train"] and (ROOT / "train.py").is_file()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_entry_point_resolves_to_a_callable(name):
    module, _, attr = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_main_commands_have_entry_points():
    targets = set(SCRIPTS.values())
    assert {"train:cli", "data.prepare:main", "analysis.__main__:console", "analysis.__main__:console_advise",
            "scripts.reproduce:main", "models.export:main", "models.sample:main",
            "models.evaluate:main"} <= targets


def test_base_install_and_analysis_extra_pull_no_torch_triton_or_cuda():
    names = {canonicalize_name(r.name) for r in requirements(None) + requirements("analysis")}
    assert {"numpy", "scipy", "pandas", "matplotlib", "hydra-core", "omegaconf", "pyyaml"} <= names
    assert not names & GPU_STACK and not [n for n in names if n.startswith("nvidia")], names


def test_train_extra_asks_for_triton_only_on_linux():
    triton = [r for r in requirements("train") if r.name == "triton"]
    assert len(triton) == 1 and triton[0].marker is not None
    assert triton[0].marker.evaluate({"sys_platform": "linux"})
    assert not triton[0].marker.evaluate({"sys_platform": "darwin"})
    assert not triton[0].marker.evaluate({"sys_platform": "win32"})


def test_requirements_txt_is_the_dev_install():
    """requirements.txt (the quickstart's one line) and `.[dev]` name the same packages with the same
    markers; a pin there (torch==...) must satisfy pyproject's range, any other range must be equal."""
    lines = [line.partition("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    txt = {canonicalize_name(r.name): r for r in map(Requirement, filter(None, lines))}
    dev = {canonicalize_name(r.name): r for r in requirements(None) + requirements("dev")}
    assert txt.keys() == dev.keys(), f"only in requirements.txt: {sorted(txt.keys() - dev.keys())}; " \
                                     f"only in pyproject: {sorted(dev.keys() - txt.keys())}"
    for name, r in txt.items():
        assert str(r.marker) == str(dev[name].marker), name
        pins = [s.version for s in r.specifier if s.operator == "=="]
        if pins:
            assert dev[name].specifier.contains(pins[0]), (name, pins, str(dev[name].specifier))
        else:
            assert r.specifier == dev[name].specifier, (name, str(r.specifier), str(dev[name].specifier))


# ---- Triton only where a Triton kernel runs ------------------------------------------------------

NO_TRITON = """
import io, logging, sys
sys.modules["triton"] = None  # `import triton` now raises ImportError, as on a machine without it
stream = io.StringIO()
logging.basicConfig(stream=stream, level=logging.WARNING)
import torch
import analysis.cli, analysis.advise, analysis.bound, schedules
from models.llama import Llama

torch.manual_seed(0)
kw = dict(vocab_size=64, n_layer=1, n_head=2, d_model=32, max_seq_len=16)
auto, plain = Llama(**kw, kernels="auto"), Llama(**kw, kernels="torch")
plain.load_state_dict(auto.state_dict())
impl = auto.set_kernels("cuda")  # resolution only: on CUDA, auto would pick Triton if it imported
tokens = torch.randint(0, 64, (2, 16))
errors = {}
try:
    Llama(**kw, kernels="triton").set_kernels("cuda")
except ValueError as e:
    errors["triton"] = str(e)
try:
    from models.kernels.rmsnorm import rms_norm_triton
except ImportError as e:
    errors["import"] = str(e)
print(__import__("json").dumps({
    "impl": impl, "log": stream.getvalue(), "errors": errors,
    "same_loss": auto(tokens, tokens).item() == plain(tokens, tokens).item(),
    "triton_halves": sorted(m for m in sys.modules if m.endswith("_triton"))}))
"""


def test_model_builds_with_kernels_auto_and_logs_why_when_triton_is_missing():
    proc = run([sys.executable, "-c", NO_TRITON], ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["impl"] == "torch" and out["same_loss"] and out["triton_halves"] == []
    assert "model.kernels=auto" in out["log"] and "Triton cannot be imported" in out["log"], out["log"]
    assert "pip install triton" in out["errors"]["triton"] and "model.kernels=auto" in out["errors"]["triton"]
    assert "pip install triton" in out["errors"]["import"] and "model.kernels=torch" in out["errors"]["import"]


LAZY = """
import sys, json
from models.llama import Llama
from models.kernels import rmsnorm
before = sorted(m for m in sys.modules if m == "triton" or m.endswith("_triton"))
fn = rmsnorm.rms_norm_triton
after = sorted(m for m in sys.modules if m == "triton" or m.endswith("_triton"))
print(json.dumps({"before": before, "after": after, "name": fn.__module__}))
"""


def test_triton_is_imported_on_first_use_of_a_triton_kernel_only():
    pytest.importorskip("triton")
    proc = run([sys.executable, "-c", LAZY], ROOT, timeout=120, env={"TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == [] and "triton" in out["after"]
    assert out["name"] == "models.kernels.rmsnorm_triton" and out["name"] in out["after"]


# The analysis without the GPU stack, as after `pip install -e ".[analysis]"`: an import hook makes torch
# and triton unimportable (sys.modules[...] = None would confuse scipy, which probes sys.modules["torch"]).
WITHOUT_TORCH = """
import importlib, importlib.abc, json, os, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("torch", "triton"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Absent())
failed = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as error:
        failed[module] = str(error)
out_dir = os.environ.get("RUN_ADVISE")
if out_dir:  # the README's transfer command, in process
    from analysis.cli import main
    table = main(["advise", "transfer", "--runs", "tests/data/paper_logs/ann124-0.2_*decay_linear_0.2_iter50000*.json",
                  "--target-runs", "tests/data/paper_logs/ann124-*iter50000*.json", "--target", "linear",
                  "--out", out_dir])
    failed["rows"] = len(table)
failed["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in ("torch", "triton"))
print(json.dumps(failed))
"""

NEEDS_TORCH: set[str] = set()  # modules of analysis/ and schedules/ allowed to import torch: none


def analysis_modules() -> list[str]:
    files = sorted(ROOT.glob("analysis/*.py")) + sorted(ROOT.glob("schedules/*.py"))
    names = [".".join(f.relative_to(ROOT).with_suffix("").parts) for f in files if f.stem != "__main__"]
    return [n.removesuffix(".__init__") for n in names if n not in NEEDS_TORCH]


def test_analysis_and_schedules_import_without_torch_or_triton():
    proc = run([sys.executable, "-c", WITHOUT_TORCH, *analysis_modules()], ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("loaded") == [] and out == {}, out


def module_level_imports(path: Path) -> set[str]:
    """Top-level names a file imports when it is imported (not those inside functions, which may be optional)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:  # module level, incl. under `if`/`try`
        for sub in ast.walk(node):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                break
            if isinstance(sub, ast.Import):
                names |= {a.name.partition(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                names.add(sub.module.partition(".")[0])
    return names


def test_what_the_analysis_imports_is_what_its_install_declares():
    """`pip install -e ".[analysis]"` must give the analysis, the schedules and `lrsched-reproduce`'s figures
    every third-party package their modules import (tqdm, used by a figure but declared only for training,
    made `lrsched-reproduce` fail in such a venv): each module-level import is the standard library, this
    project, or a distribution of the base requirements or the analysis extra."""
    files = [f for f in sorted(ROOT.glob("analysis/*.py")) + sorted(ROOT.glob("schedules/*.py"))
             + sorted(ROOT.glob("scripts/figures/*.py")) + [ROOT / "scripts" / "reproduce.py"]
             if ".".join(f.relative_to(ROOT).with_suffix("").parts) not in NEEDS_TORCH]
    owners = metadata.packages_distributions()
    declared = {canonicalize_name(r.name) for r in requirements(None) + requirements("analysis")}
    ours = set(PYPROJECT["tool"]["setuptools"]["py-modules"]) | {p.name for p in ROOT.iterdir() if p.is_dir()}
    missing = {}
    for f in files:
        for name in module_level_imports(f) - ours - set(sys.stdlib_module_names):
            dists = {canonicalize_name(d) for d in owners.get(name, [name])}
            if not dists & declared:
                missing.setdefault(name, []).append(str(f.relative_to(ROOT)))
    assert missing == {}, f"imported at module level but not declared for .[analysis]: {missing}"


@pytest.mark.slow
def test_advise_transfer_runs_without_torch_or_triton(tmp_path):
    """The README's `advise transfer` on the paper's logs, end to end, with torch and triton absent."""
    proc = run([sys.executable, "-c", WITHOUT_TORCH, "analysis.cli"], ROOT, timeout=300,
               env={"RUN_ADVISE": str(tmp_path), "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and out["rows"] > 0, out
    assert (tmp_path / "overlay.png").stat().st_size > 0


# ---- an editable install in a fresh virtual environment, used from another directory -------------

@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(env_dir)],
                   check=True, timeout=120)
    bin_dir = env_dir / "bin"
    proc = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                "--no-build-isolation", "-e", str(ROOT)], ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working directory with no repository in it or above it."""
    assert not (tmp_path / "configs").exists() and ROOT not in tmp_path.parents
    return tmp_path


@pytest.mark.slow
def test_installed_commands_run_from_another_directory(venv_bin, elsewhere):
    for name in SCRIPTS:
        assert (venv_bin / name).is_file(), f"{name} was not installed"
    proc = run([str(venv_bin / "lrsched-analysis"), "--help"], elsewhere)
    assert proc.returncode == 0 and "advise" in proc.stdout, proc.stderr[-2000:]
    proc = run([str(venv_bin / "lrsched-reproduce"), "--list"], elsewhere)
    assert proc.returncode == 0 and "fig1a" in proc.stdout, proc.stderr[-2000:]
    for name in ("lrsched-export", "lrsched-sample", "lrsched-evaluate"):
        if name in SCRIPTS:
            proc = run([str(venv_bin / name), "--help"], elsewhere)
            assert proc.returncode == 0 and "usage" in proc.stdout, proc.stderr[-2000:]
    where = run([str(venv_bin / "python"), "-c", "import models, analysis, training, data, schedules, train;"
                 "print(train.__file__, *(m.__path__[0] for m in (models, analysis, training, data, schedules)))"],
                elsewhere)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(Path(p).is_relative_to(ROOT) for p in where.stdout.split()), where.stdout  # the repo, not a namesake


@pytest.mark.slow
def test_installed_train_composes_its_configs_from_another_directory(venv_bin, elsewhere):
    proc = run([str(venv_bin / "lrsched-train"), "--help"], elsewhere)
    assert proc.returncode == 0 and "schedule: " in proc.stdout and "wsd" in proc.stdout, proc.stderr[-2000:]
    proc = run([str(venv_bin / "lrsched-train"), "--cfg", "job", "trainer.max_steps=7", "schedule=cosine"], elsewhere)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max_steps: 7" in proc.stdout and "_target_: schedules." in proc.stdout, proc.stdout[-2000:]
    tiny = ["model.n_layer=1", "model.n_head=2", "model.d_model=32", "trainer.seq_len=16", "trainer.batch_size=4",
            "trainer.micro_batch_size=4", "trainer.max_steps=3", "trainer.warmup_steps=1", "trainer.eval_interval=3",
            "trainer.eval_batches=1", "trainer.progress=false", "trainer.device=cpu", "hydra.run.dir=run"]
    proc = run([str(venv_bin / "lrsched-train"), *tiny], elsewhere)  # a real run: exit 0, its files here
    assert proc.returncode == 0 and (elsewhere / "run" / "metrics.jsonl").is_file(), proc.stderr[-2000:]
    proc = run([str(venv_bin / "lrsched-train"), "optimizer.lrr=1e-3"], elsewhere)  # the door check runs too
    assert proc.returncode != 0 and "did you mean optimizer.lr" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_installed_advise_exits_0_with_its_table(venv_bin, elsewhere):
    """A console command's return value is its exit status: the advice (a table in Python) must not turn
    into an error exit."""
    logs = ROOT / "tests" / "data" / "paper_logs"
    proc = run([str(venv_bin / "lrsched-advise"), "transfer", "--runs", str(logs / "ann124-0.2_*decay_linear_0.2_iter50000*.json"),
                "--target-runs", str(logs / "ann124-*iter50000*.json"), "--target", "linear", "--out", "plots"], elsewhere)
    assert proc.returncode == 0 and "optimizer.lr=" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


TARGETS = """
import inspect, json, sys
from pathlib import Path
from hydra.utils import get_object
from omegaconf import OmegaConf
from training.setup import CONFIG_DIR, compose

def targets(node):
    if isinstance(node, dict):
        yield from ([node["_target_"]] if "_target_" in node else [])
        for value in node.values():
            yield from targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from targets(value)

found = {}
for schedule in sorted(p.stem for p in (CONFIG_DIR / "schedule").glob("*.yaml")):
    # what a run directory records: train.py writes the resolved config as config.yaml
    recorded = OmegaConf.to_yaml(compose([f"schedule={schedule}"]), resolve=True)
    for target in targets(OmegaConf.to_container(OmegaConf.create(recorded))):
        obj = get_object(target)
        found[target] = inspect.getfile(obj) if not target.startswith("torch.") else "torch"
print(json.dumps(found))
"""


@pytest.mark.slow
def test_recorded_targets_resolve_from_another_directory(venv_bin, elsewhere):
    proc = run([str(venv_bin / "python"), "-c", TARGETS], elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    schedules = [t for t in found if t.startswith("schedules.")]
    assert len(schedules) >= 10 and "models.llama.Llama" in found and "torch.optim.AdamW" in found, found
    ours = {t: f for t, f in found.items() if not t.startswith("torch.")}
    assert all(Path(f).is_relative_to(ROOT) for f in ours.values()), ours
