"""`make system` on machines that differ in what they already have (issue #25).

The set-up runs with a PATH that holds only stand-ins: `apt-get` records what it is asked
to install (and refuses the packages listed in APT_REFUSE as apt does on a conflict), and
`npm`/`chromium*` exist only where the scenario says the machine has them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")

APT_GET = """#!/bin/bash
echo "$*" >> "$APT_LOG"
if [ "$1" = install ]; then
  for pkg in "$@"; do
    for refused in $APT_REFUSE; do
      if [ "$pkg" = "$refused" ]; then
        echo "The following packages have unmet dependencies:"
        echo " nodejs : Conflicts: $pkg"
        echo "E: Unable to correct problems, you have held broken packages." >&2
        exit 100
      fi
    done
  done
fi
exit 0
"""


def _run_system(tmp_path: Path, *, have: tuple[str, ...], ding: bool, refuse: str = "",
                extra_env: dict[str, str] | None = None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # what the Makefile itself runs while it is parsed
    for tool in ("cat", "sha1sum", "cut"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for name in ("apt-get", "sudo", *have):
        body = APT_GET if name == "apt-get" else '#!/bin/bash\nexec "$@"\n'
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    ding_file = tmp_path / "de-en"
    if ding:
        ding_file.write_text("Haus :: house\n")
    log = tmp_path / "apt.log"
    log.touch()
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "APT_LOG": str(log),
        "APT_REFUSE": refuse,
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [MAKE, "-s", "-C", str(REPO), "system", f"DING_FILE={ding_file}"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    installs = [line.split()[1:] for line in log.read_text().splitlines() if line.startswith("install")]
    installed = {word for words in installs for word in words if not word.startswith("-")}
    return proc, installed, log.read_text()


pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def test_node_with_its_own_npm_gets_only_what_is_missing(tmp_path):
    # NodeSource's nodejs bundles npm and conflicts with Debian's npm package
    proc, installed, _ = _run_system(tmp_path, have=("npm",), ding=False, refuse="npm")
    assert proc.returncode == 0, proc.stderr
    assert installed == {"trans-de-en", "chromium"}


def test_machine_without_npm_gets_all_three(tmp_path):
    proc, installed, _ = _run_system(tmp_path, have=(), ding=False)
    assert proc.returncode == 0, proc.stderr
    assert installed == {"trans-de-en", "chromium", "npm"}


def test_machine_with_everything_calls_no_apt(tmp_path):
    # Ubuntu names the binary chromium-browser
    proc, installed, log = _run_system(tmp_path, have=("npm", "chromium-browser"), ding=True)
    assert proc.returncode == 0, proc.stderr
    assert installed == set() and log == ""


def test_a_package_apt_refuses_is_named_with_apt_reason(tmp_path):
    proc, _, _ = _run_system(tmp_path, have=("chromium",), ding=True, refuse="npm")
    assert proc.returncode != 0
    assert "'npm'" in proc.stderr and "Conflicts: npm" in proc.stderr
    assert "held broken packages" not in proc.stderr.splitlines()[-1]


def test_one_refused_package_does_not_stop_the_others(tmp_path):
    proc, installed, _ = _run_system(tmp_path, have=(), ding=False, refuse="chromium")
    assert proc.returncode != 0
    assert {"trans-de-en", "npm"} <= installed
    assert "'chromium'" in proc.stderr


def test_the_demo_corpus_packages_only_when_asked_and_missing(tmp_path):
    # GERMAN_DOCS=1 (make german-docs, make demo) adds the three documentation packages;
    # one already present (its folder under GERMAN_DOCS_ROOT) is not asked for again
    root = tmp_path / "root"
    (root / "usr/share/games/fortunes/de").mkdir(parents=True)
    proc, installed, _ = _run_system(tmp_path, have=("npm", "chromium"), ding=True,
                                     extra_env={"GERMAN_DOCS": "1", "GERMAN_DOCS_ROOT": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert installed == {"libreoffice-help-de", "debian-reference-de"}
