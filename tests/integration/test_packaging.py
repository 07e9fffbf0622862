"""The installed package: the wheel carries the configs, the console scripts run from any folder.
Fresh processes on purpose (the installed scripts are what is tested); their timeouts only catch
a hang."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from chitalab.outputs import RESULTS_FILE
from tests.support import HANG, REPO, cli_command


def console_script(name: str) -> str:
    """The console script `name` installed beside this interpreter (`pip install -e .` puts it there)."""
    script = Path(sys.executable).with_name(name)
    assert script.is_file(), f"{script} is missing; reinstall with pip install -e '.[dev]'"
    return str(script)


def test_the_wheel_ships_the_configs_the_license_and_the_commands(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=HANG,
    )
    wheel = next(tmp_path.glob("chitalab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    conf = REPO / "src" / "chitalab" / "conf"
    expected = {f"chitalab/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*.yaml")}
    assert "chitalab/conf/config.yaml" in expected and expected <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "chitalab = chitalab.__main__:main" in scripts and "chitalab-report = " in scripts


def test_the_chitalab_command_runs_from_another_folder(tmp_path):
    _, env = cli_command()
    shown = subprocess.run(
        [console_script("chitalab"), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG
    )
    assert shown.returncode == 0, shown.stderr
    assert "model: " in shown.stdout and "sparsity" in shown.stdout
    done = subprocess.run(
        # pruner=mp: what is tested is the installed command, not CHITA's search
        [
            console_script("chitalab"),
            "model=tiny_mlp",
            "dataset=synthetic",
            "pruner=mp",
            "logger=none",
            "progress=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(next(tmp_path.glob(f"outputs/runs/*/{RESULTS_FILE}")).read_text())
    assert results["model"] == "tiny_mlp" and results["dataset"] == "synthetic"
