"""Dependency checks, and test-config.yaml as real trees write it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from phalanx.host import depends
from phalanx.load import testconfig, yamlsrc
from tests.tree.helpers import make_tree, phalanx, reasons, results, statuses


def test_python_modules_are_found_without_being_imported(tmp_path: Path) -> None:
    package = tmp_path / "noisy"
    package.mkdir()
    (package / "__init__.py").write_text("raise SystemExit('imported!')\n")
    (package / "sub.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        assert depends.unmet([("python", "noisy"), ("python", "noisy.sub")]) == []
        assert depends.unmet([("python", "noisy.missing")]) == ["python noisy.missing"]
    finally:
        sys.path.remove(str(tmp_path))
    assert "noisy" not in sys.modules


def test_unknown_kinds_and_customs_are_unmet_and_say_why() -> None:
    assert depends.unmet([("app", "sh"), ("python", "yaml")]) == []
    assert depends.unmet([("asterisk", "app_dial")]) == [
        "asterisk app_dial (no check for 'asterisk' dependencies)"
    ]
    missing = depends.unmet([("custom", "soundcard")])
    assert missing == [
        "custom soundcard (no check is registered for custom dependency 'soundcard')"
    ]


def test_one_space_indentation_and_the_list_of_dependencies() -> None:
    text = """testinfo:
 summary: 'A sample test'
 description: |
  This test verifies that monkeys have taken over the phone system.

properties:
 minversion: '1.8'
 expectedResult: false
 tags:
  - pbx
 dependencies:
 - python : 'twisted'
 - python : 'starpy'
 - app : 'sipp'
"""
    config = testconfig.parse(yamlsrc.parse(text, Path("test-config.yaml")))
    assert config.errors == []
    assert config.summary == "A sample test"
    assert config.dependencies == (("python", "twisted"), ("python", "starpy"), ("app", "sipp"))
    assert config.expected_fail and config.tags == ("pbx",)


def test_a_custom_check_plugs_in_through_an_entry_point(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "labchecks.py").write_text(
        "import os\n\ndef soundcard():\n    return os.environ.get('LAB_SOUNDCARD') == 'yes'\n"
    )
    info = plugin / "labchecks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labchecks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[phalanx.custom_dependencies]\nsoundcard = labchecks:soundcard\n"
    )
    config = "properties:\n    dependencies:\n        - custom: 'soundcard'\n"
    make_tree(tmp_path, {"audio": (config, "#!/bin/sh\nexit 0\n")})
    env = {**os.environ, "PYTHONPATH": f"{plugin}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listed = phalanx("tests", "--list", cwd=tmp_path, env={**env, "LAB_SOUNDCARD": "no"})
    assert listed.stdout.strip() == "U tests/audio  (unmet: custom soundcard)"
    assert phalanx("tests", cwd=tmp_path, env={**env, "LAB_SOUNDCARD": "no"}).returncode == 0
    assert statuses(results(tmp_path)) == {"tests/audio": "skipped"}
    assert reasons(results(tmp_path))["tests/audio"] == "unmet dependency: custom soundcard"
    shutil.rmtree(tmp_path / "phalanx-results")
    assert phalanx("tests", cwd=tmp_path, env={**env, "LAB_SOUNDCARD": "yes"}).returncode == 0
    assert statuses(results(tmp_path)) == {"tests/audio": "passed"}
