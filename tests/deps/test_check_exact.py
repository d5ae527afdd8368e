"""``deps check`` is exact: no false alarms on correct installs, and warnings for what is only optional."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import check, install
from volume_cli.deps.check import next_step
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY

PYC = f"__pycache__/mod.cpython-{PY.replace('.', '')}.pyc"


def test_bytecode_listed_in_record_and_rewritten_by_compile_is_not_damage(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    # numpy's wheel lists .pyc files in RECORD; --compile-bytecode writes its own over them
    folder = tmp_path / "wheels-pyc"
    stale = b"\x00" * 16 + b"stale bytecode from the wheel builder"
    wheel = build_wheel(
        folder,
        "withpyc",
        "1.0",
        files={"withpyc/__init__.py": "", "withpyc/mod.py": "X = 1\n", f"withpyc/{PYC}": stale},
    )
    assert f"withpyc/{PYC}" in zipfile.ZipFile(wheel).read("withpyc-1.0.dist-info/RECORD").decode()
    with IndexServer(folder) as index:
        project = projects.make("pyc", {"main": {"packages": ["withpyc"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    on_disk = (layout.deps_path("pyc", PY) / "withpyc" / PYC).read_bytes()
    assert on_disk != stale  # the compile step did rewrite it: the case this test is about
    report = check(layout=layout, project=project, progress=progress)
    assert report.ok, report
    assert not report.file_problems


def test_an_optional_portion_of_a_namespace_package_is_a_warning_not_a_failure(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-ns"
    # like googleapis-common-protos: google/longrunning/ has no __init__, operations_pb2_grpc imports grpc
    build_wheel(
        folder,
        "commonprotos",
        "1.0",
        files={
            "nsx/longrun/ops_pb2.py": "X = 1\n",
            "nsx/longrun/ops_pb2_grpc.py": "import grpcish\n",
            "nsx/api/__init__.py": "",
        },
    )
    build_wheel(folder, "runpodish", "1.0", requires=["commonprotos"])
    with IndexServer(folder) as index:
        project = projects.make("ns", {"main": {"packages": ["runpodish"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    report = check(layout=layout, project=project, progress=progress)
    assert report.ok, report
    assert [(w.distribution, w.module) for w in report.import_warnings] == [
        ("commonprotos", "nsx.longrun.ops_pb2_grpc")
    ]
    assert "grpcish" in report.import_warnings[0].error


def test_a_namespace_portion_missing_a_module_of_an_installed_package_still_fails(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-ns2"
    build_wheel(folder, "partone", "1.0", files={"nsz/one/__init__.py": ""})
    build_wheel(folder, "parttwo", "1.0", requires=["partone"], files={"nsz/two/mod.py": "import nsz.one.gone\n"})
    with IndexServer(folder) as index:
        project = projects.make("ns2", {"main": {"packages": ["parttwo"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    report = check(layout=layout, project=project, progress=progress)
    assert not report.ok
    assert [(f.distribution, f.module) for f in report.import_failures] == [("parttwo", "nsz.two.mod")]
    assert "reinstalling does not help" in next_step(report)


def test_unmet_requirements_of_a_no_deps_package_are_warnings(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-nodeps"
    build_wheel(
        folder,
        "funasrish",
        "1.0",
        requires=[
            "umap",  # the wrong name funasr declares
            "delta>=2",
            "beta",
            "oldthing; python_version < '3.0'",
            "gputhing; extra == 'gpu'",
        ],
    )
    build_wheel(folder, "delta", "1.0")
    build_wheel(folder, "beta", "1.0")
    with IndexServer(folder) as index:
        project = projects.make(
            "nd", {"plain": {"packages": ["delta", "beta"]}, "odd": {"packages": ["funasrish"], "no_deps": True}}
        )
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    report = check(layout=layout, project=project, progress=progress)
    assert report.ok, report
    assert [(u.distribution, u.requirement, u.installed) for u in report.unmet_requirements] == [
        ("funasrish", "umap", None),
        ("funasrish", "delta>=2", "1.0"),
    ]


def test_a_file_two_wheels_both_ship_is_not_reported_as_changed(
    layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    # site-packages keeps one copy of a clashing path, and so does the forest; each entry still holds its own
    folder = tmp_path / "wheels-clash"
    build_wheel(folder, "clash-one", "1.0", files={"clash_one.py": "", "NOTICE.txt": "one\n"})
    build_wheel(folder, "clash-two", "1.0", files={"clash_two.py": "", "NOTICE.txt": "two\n"})
    with IndexServer(folder) as index:
        project = projects.make("clash", {"main": {"packages": ["clash-one", "clash-two"]}})
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    clean = check(layout=layout, project=project, progress=progress)
    assert clean.ok, str(clean.to_dict())[-700:]
    # damage in the copy the forest links is still found, and blamed on its owner
    behind = (layout.deps_path("clash", PY) / "NOTICE.txt").resolve()
    owner = "clash-one" if behind.parent.name.startswith("clash_one") or "clash-one" in str(behind) else "clash-two"
    behind.write_text("tampered\n")
    report = check(layout=layout, project=project, progress=progress, imports=False)
    assert [(p.distribution, p.problem) for p in report.file_problems] == [(owner, "changed")]


def test_the_cli_prints_warnings_and_a_next_line_that_works(  # type: ignore[no-untyped-def]
    cli, layout: VolumeLayout, projects: Projects, tmp_path: Path, progress: NullProgress, isolated_uv: Path
) -> None:
    folder = tmp_path / "wheels-cli"
    build_wheel(folder, "commonprotos", "1.0", files={"nsx/longrun/ops_pb2_grpc.py": "import grpcish\n"})
    build_wheel(folder, "funasrish", "1.0", requires=["umap"])
    with IndexServer(folder) as index:
        project = projects.make(
            "cliproj", {"main": {"packages": ["commonprotos"]}, "odd": {"packages": ["funasrish"], "no_deps": True}}
        )
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
        base = ["--project", "cliproj", "--root", str(layout.root), "--projects-dir", str(projects.base)]
        clean = cli("deps", "check", *base)
        assert clean.exit_code == 0, clean.stderr
        assert "optional" in clean.stdout and "nsx.longrun.ops_pb2_grpc" in clean.stdout
        assert "unmet" in clean.stdout and "umap" in clean.stdout

        entries = sorted(path.name for path in layout.store_dir.iterdir())
        (layout.deps_path("cliproj", PY) / "nsx" / "longrun" / "ops_pb2_grpc.py").resolve().write_text("damage\n")
        broken = cli("deps", "check", *base)
        assert broken.exit_code != 0
        assert "next: volume-cli deps install --project cliproj --force" in broken.stderr
        repaired = cli("deps", "install", *base, "--index-url", index.url, "--force")
        assert repaired.exit_code == 0, repaired.stderr
        assert "0 installed" in repaired.stdout and "1 repaired in place" in repaired.stdout
    assert cli("deps", "check", *base).exit_code == 0
    assert sorted(path.name for path in layout.store_dir.iterdir()) == entries
    dropped = cli("gc", "--root", str(layout.root), "--drop-previous", "--grace-hours", "0", "--json", "--yes")
    assert dropped.exit_code == 0, dropped.stderr
    assert len(json.loads(dropped.stdout)["generations_removed"]) == 1
