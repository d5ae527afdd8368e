"""Workers import from a local copy of their generation (volume_cli/local_copy.py).

The volume here is a tmp folder on the same disk as the local cache, where the default
(auto) makes no copy: these tests set VOLUME_CLI_LOCAL_COPY=1 to force it. The simulated
network volume, where auto copies, is in tests/test_netvol_worker.py.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.helpers import write_installed_state
from volume_cli import local_copy
from volume_cli.consumer_env import consumer_env, write_runtime_copy
from volume_cli.deps.forest import generation_dir, switch_current
from volume_cli.layout import VolumeLayout
from volume_cli.runtime import activate

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PROJECT = "copied"
REPO = str(Path(__file__).resolve().parents[1])
CODE = "import sys, a, pkg; print(a.V + pkg.V, a.__file__, sys.dont_write_bytecode)"


def _generation(layout: VolumeLayout, name: str, version: str, *, extra_files: int = 0) -> Path:
    """Real files, plus a relative link into a store entry, as a forest has."""
    entry = layout.root / "python-deps" / ".store" / f"pkg-{name}" / "pkg"
    entry.mkdir(parents=True)
    (entry / "__init__.py").write_text(f"V = {version!r}\n")
    for number in range(extra_files):
        (entry / f"m{number}.py").write_text(f"N = {number}\n")
    folder = generation_dir(layout, PROJECT, PY, name)
    folder.mkdir(parents=True)
    for module in ("a", "b"):
        (folder / f"{module}.py").write_text(f"V = {version!r}\n")
    os.symlink(os.path.relpath(entry, folder), folder / "pkg")
    return folder


@pytest.fixture
def volume(layout: VolumeLayout) -> VolumeLayout:
    _generation(layout, "gen-a", "A")
    switch_current(layout, PROJECT, PY, "gen-a")
    return layout


def _env(layout: VolumeLayout, cache: Path, **extra: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    variables = consumer_env(layout=layout, project=PROJECT, python_version=PY, mount=None).variables
    return {**base, **variables, "VOLUME_CLI_LOCAL_COPY": "1", "VOLUME_CLI_LOCAL_CACHE": str(cache), **extra}


def _start(environment: dict[str, str], code: str = CODE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60)


def _copies(layout: VolumeLayout, cache: Path, name: str = "gen-a") -> Path:
    generation = os.path.realpath(generation_dir(layout, PROJECT, PY, name))
    return Path(local_copy.copies_folder(str(cache), generation, PROJECT, PY))


def test_a_worker_imports_from_its_copy_made_at_first_start(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _start(_env(volume, cache))
    assert first.returncode == 0 and first.stderr == "", first.stderr
    copy = _copies(volume, cache) / "gen-a"
    assert first.stdout.split() == ["AA", str(copy / "a.py"), "True"]
    marker = json.loads((copy / local_copy.MARKER).read_text())
    assert marker["files"] == 3 and marker["source"] == os.path.realpath(generation_dir(volume, PROJECT, PY, "gen-a"))
    assert (copy / "pkg").is_dir() and not (copy / "pkg").is_symlink()  # the store entry's files, not a link
    assert _start(_env(volume, cache)).stdout == first.stdout  # later starts use it
    assert sorted(path.name for path in copy.parent.iterdir()) == ["gen-a", "gen-a.lock"]


def test_the_default_makes_no_copy_on_the_volumes_own_disk(volume: VolumeLayout, tmp_path: Path) -> None:
    environment = _env(volume, tmp_path / "cache")
    del environment["VOLUME_CLI_LOCAL_COPY"]
    done = _start(environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1].startswith(str(volume.root)) and not (tmp_path / "cache" / local_copy.COPIES).exists()


def test_opting_out_imports_from_the_volume(volume: VolumeLayout, tmp_path: Path) -> None:
    done = _start(_env(volume, tmp_path / "cache", VOLUME_CLI_LOCAL_COPY="0"))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[:2] == ["AA", str(generation_dir(volume, PROJECT, PY, "gen-a").resolve() / "a.py")]


COUNTED_STARTER = """
import os, sys, time
from volume_cli import local_copy
original = local_copy.TreeCopy.run
def counted(self):
    open(os.path.join(sys.argv[3], str(os.getpid())), "w").close()
    return original(self)
local_copy.TreeCopy.run = counted
while not os.path.exists(sys.argv[4]):
    time.sleep(0.001)
print(local_copy.local_generation(sys.argv[1], project="copied", python_version=sys.argv[5], cache=sys.argv[2]))
"""


def test_starters_at_once_make_exactly_one_copy_and_all_use_it(layout: VolumeLayout, tmp_path: Path) -> None:
    generation = os.path.realpath(_generation(layout, "gen-a", "A", extra_files=300))
    cache, builds, go = tmp_path / "cache", tmp_path / "builds", tmp_path / "go"
    builds.mkdir()
    environment = {**os.environ, "PYTHONPATH": REPO, "VOLUME_CLI_LOCAL_COPY": "1"}
    command = [sys.executable, "-c", COUNTED_STARTER, generation, str(cache), str(builds), str(go), PY]
    starters = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(0.5)  # all of them waiting at the line
    go.touch()
    outputs = {starter.communicate(timeout=60)[0].strip() for starter in starters}
    assert all(starter.returncode == 0 for starter in starters)
    copy = _copies(layout, cache) / "gen-a"
    assert outputs == {str(copy)}
    assert len(list(builds.iterdir())) == 1
    assert sorted(path.name for path in copy.parent.iterdir()) == ["gen-a", "gen-a.lock"]  # no temp folder left
    assert len(list((copy / "pkg").iterdir())) == 301


def test_starters_at_once_through_env_output_share_one_copy(volume: VolumeLayout, tmp_path: Path) -> None:
    environment = _env(volume, tmp_path / "cache")
    starters = [
        subprocess.Popen([sys.executable, "-c", CODE], env=environment, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = {starter.communicate(timeout=60)[0] for starter in starters}
    assert len(outputs) == 1 and all(starter.returncode == 0 for starter in starters)
    assert str(_copies(volume, tmp_path / "cache")) in outputs.pop()


def test_a_torn_copy_without_its_marker_is_never_used(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    torn = _copies(volume, cache) / "gen-a"
    torn.mkdir(parents=True)
    (torn / "a.py").write_text("V = 'TORN'\n")  # a copy killed half-way, at the final name (never by this code)
    done = _start(_env(volume, cache))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["AA", str(torn / "a.py")]  # replaced by a whole copy
    assert (torn / local_copy.MARKER).is_file()


def test_a_marker_for_another_generation_is_not_trusted(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    other = _copies(volume, cache) / "gen-a"
    other.mkdir(parents=True)
    (other / "a.py").write_text("V = 'OTHER'\n")
    (other / local_copy.MARKER).write_text(json.dumps({"source": "/another/volume/gen-a", "files": 1}))
    done = _start(_env(volume, cache))
    assert done.stdout.split()[0] == "AA", done.stderr


def _one_fallback_line(done: subprocess.CompletedProcess[str], volume: VolumeLayout) -> str:
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == ["AA", str(generation_dir(volume, PROJECT, PY, "gen-a").resolve() / "a.py")]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("volume-cli: importing from the volume, not a local copy:"), lines
    return lines[0]


def test_an_unusable_cache_falls_back_to_the_volume(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "a-file"
    cache.write_text("not a folder\n")
    _one_fallback_line(_start(_env(volume, cache)), volume)


def test_an_unwritable_cache_falls_back_to_the_volume(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    copies = _copies(volume, cache)
    copies.mkdir(parents=True)
    # Immutable: even root cannot create in it (mode bits do not stop root).
    if subprocess.run(["chattr", "+i", str(copies)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        _one_fallback_line(_start(_env(volume, cache)), volume)
    finally:
        subprocess.run(["chattr", "-i", str(copies)], check=True)


@pytest.mark.parametrize(
    ("setting", "why"),
    [
        ({"VOLUME_CLI_LOCAL_COPY_MAX_MB": "0.00001"}, "over"),
        ({"VOLUME_CLI_LOCAL_COPY_TIMEOUT": "0"}, "time limit"),
    ],
)
def test_a_ceiling_or_a_time_limit_falls_back_to_the_volume(
    volume: VolumeLayout, tmp_path: Path, setting: dict[str, str], why: str
) -> None:
    cache = tmp_path / "cache"
    assert why in _one_fallback_line(_start(_env(volume, cache, **setting)), volume)
    assert [path.name for path in _copies(volume, cache).iterdir()] == ["gen-a.lock"]  # no copy, whole or half


def test_a_read_error_falls_back_to_the_volume(volume: VolumeLayout, tmp_path: Path) -> None:
    os.symlink("missing.py", generation_dir(volume, PROJECT, PY, "gen-a") / "broken.py")
    cache = tmp_path / "cache"
    _one_fallback_line(_start(_env(volume, cache)), volume)
    assert [path.name for path in _copies(volume, cache).iterdir()] == ["gen-a.lock"]


def test_a_link_out_of_the_volume_is_never_followed(volume: VolumeLayout, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the volume's\n")
    os.symlink(outside, generation_dir(volume, PROJECT, PY, "gen-a") / "planted")
    cache = tmp_path / "cache"
    assert "leads out of" in _one_fallback_line(_start(_env(volume, cache)), volume)
    assert not list(cache.rglob("secret.txt"))


def test_a_generation_over_the_recorded_ceiling_is_not_read_again(volume: VolumeLayout, tmp_path: Path) -> None:
    record = volume.root / ".metadata" / "projects" / PROJECT / "generations" / "gen-a.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"entries": [{"size_bytes": 5 << 30}]}))
    cache = tmp_path / "cache"
    ceiling = {"VOLUME_CLI_LOCAL_COPY_MAX_MB": "2048"}  # by default also half the free disk: this machine's
    line = _one_fallback_line(_start(_env(volume, cache, **ceiling)), volume)
    assert "5120 MB, over the 2048 MB ceiling" in line
    assert (_copies(volume, cache) / "gen-a.skip").is_file()
    record.unlink()  # the note alone decides now
    assert "5120 MB, over the 2048 MB ceiling" in _one_fallback_line(_start(_env(volume, cache, **ceiling)), volume)
    done = _start(_env(volume, cache, VOLUME_CLI_LOCAL_COPY_MAX_MB="8192"))  # a ceiling raised since
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[1] == str(_copies(volume, cache) / "gen-a" / "a.py")


LONG_LIVED = """
import os, sys, time
import a
print(a.__file__, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
import b  # lazily, after two switches and the copies they brought
print(a.V + b.V, b.__file__)
"""


def test_a_new_generation_gets_a_new_copy_and_the_old_one_keeps_serving_its_process(
    volume: VolumeLayout, tmp_path: Path
) -> None:
    cache, go = tmp_path / "cache", tmp_path / "go"
    for name, version in (("gen-b", "B"), ("gen-c", "C")):
        _generation(volume, name, version)
    environment = _env(volume, cache)
    worker = subprocess.Popen(
        [sys.executable, "-c", LONG_LIVED, str(go)], env=environment, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == str(_copies(volume, cache) / "gen-a" / "a.py")
        for name, expected in (("gen-b", "BB"), ("gen-c", "CC")):
            switch_current(volume, PROJECT, PY, name)
            assert _start(environment).stdout.split()[0] == expected
        go.touch()
        out, _ = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert out.split() == ["AA", str(_copies(volume, cache) / "gen-a" / "b.py")]
    assert _start(environment).stdout.split()[0] == "CC"  # nobody holds gen-a now: pruned
    kept = sorted(path.name for path in _copies(volume, cache).iterdir() if not path.name.endswith(".lock"))
    assert kept == ["gen-b", "gen-c"]  # the current one and the newest other (a rollback's)


def test_the_copy_keeps_bytecode_and_source_times(volume: VolumeLayout, tmp_path: Path) -> None:
    import py_compile

    generation = generation_dir(volume, PROJECT, PY, "gen-a")
    compiled = py_compile.compile(str(generation / "a.py"), doraise=True)
    cache = tmp_path / "cache"
    assert _start(_env(volume, cache)).returncode == 0
    copy = _copies(volume, cache) / "gen-a"
    assert (copy / os.path.relpath(compiled, generation)).read_bytes() == Path(compiled).read_bytes()
    assert os.stat(copy / "a.py").st_mtime_ns == os.stat(generation / "a.py").st_mtime_ns


def test_activate_pins_the_local_copy(volume: VolumeLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_installed_state(volume, PROJECT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "dont_write_bytecode", sys.dont_write_bytecode)
    monkeypatch.setattr(os, "environ", {**os.environ, "VOLUME_CLI_LOCAL_COPY": "1"})
    found = activate(PROJECT, volume.root, local_cache=tmp_path / "cache")
    assert found.sys_path_entry == _copies(volume, tmp_path / "cache") / "gen-a"
    assert sys.path[0] == str(found.sys_path_entry) and sys.dont_write_bytecode


def test_activate_after_the_boot_keeps_the_boots_copy(volume: VolumeLayout, tmp_path: Path) -> None:
    write_installed_state(volume, PROJECT)
    cache = tmp_path / "cache"
    code = (
        "import sys, a\n"
        f"sys.path.append({REPO!r})\n"
        "from volume_cli.runtime import activate\n"
        f"entry = activate({PROJECT!r}, {str(volume.root)!r}).sys_path_entry\n"
        f"print(a.__file__.startswith(str(entry)), sum(p.startswith({str(cache)!r}) for p in sys.path))\n"
    )
    done = _start(_env(volume, cache), code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "1"]


def test_the_runtime_copy_on_the_volume_activates_from_a_local_copy(volume: VolumeLayout, tmp_path: Path) -> None:
    write_installed_state(volume, PROJECT)
    runtime = write_runtime_copy(volume)
    assert (runtime.parent / "volume_cli_local_copy.py").read_bytes() == Path(local_copy.__file__).read_bytes()
    cache = tmp_path / "cache"
    code = (
        "import runpy, sys\n"
        f"runtime = runpy.run_path({str(runtime)!r})\n"
        f"runtime['activate']({PROJECT!r}, {str(volume.root)!r}, local_cache={str(cache)!r})\n"
        "import a\n"
        "print(a.__file__, 'volume_cli' in sys.modules)\n"
    )
    for _ in range(2):  # -S: no site-packages, so no volume_cli package: the copy code beside the runtime runs
        done = subprocess.run(
            [sys.executable, "-S", "-c", code],
            env={"PATH": os.environ["PATH"], "VOLUME_CLI_LOCAL_COPY": "1"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert done.stdout.split() == [str(_copies(volume, cache) / "gen-a" / "a.py"), "False"]
        assert not list(runtime.parent.rglob("*.pyc"))  # the sibling was loaded without writing bytecode
        assert _kept_code(cache).name.startswith("volume_cli_local_copy.")  # compiled once, kept on local disk


def _kept_code(cache: Path) -> Path:
    kept = list((cache / "boot-code").iterdir())
    assert len(kept) == 1, kept
    return kept[0]


def test_the_copy_code_is_compiled_once_and_kept_with_its_source_on_local_disk(
    volume: VolumeLayout, tmp_path: Path
) -> None:
    import marshal

    cache = tmp_path / "cache"
    environment = _env(volume, cache)
    assert _start(environment).stderr == ""
    kept = _kept_code(cache)
    sibling = Path(environment["PYTHONPATH"]) / "volume_cli_local_copy.py"
    source = sibling.read_bytes()
    head = kept.read_bytes()[: -len(marshal.dumps(compile(source, str(sibling), "exec", dont_inherit=True))) - 4]
    assert head.endswith(source)  # kept with the source it was compiled from
    assert marshal.loads(kept.read_bytes()[len(head) + 4 :]).co_filename == str(sibling)  # its tracebacks name it
    # Kept code runs instead of compiling: a planted body (with a valid check) shows it.
    planted = marshal.dumps(compile(source + b"\nsys.stderr.write('from kept code\\n')\n", "x", "exec"))
    kept.write_bytes(head + zlib.crc32(planted).to_bytes(4, "little") + planted)
    assert _start(environment).stderr == "from kept code\n"
    # A changed source never runs older code: it is compiled, and kept beside.
    sibling.write_bytes(source + b"\n# a newer volume-cli\n")
    assert _start(environment).stderr == ""
    assert len(list((cache / "boot-code").iterdir())) == 2
    # A torn or corrupt kept file is compiled again.
    sibling.write_bytes(source)
    kept.write_bytes(head + planted[: len(planted) // 2])
    done = _start(environment)
    assert (done.returncode, done.stderr) == (0, "")
    kept.write_bytes(head + b"\0\0\0\0" + planted)
    assert _start(environment).stderr == ""
    assert not [path for path in (cache / "boot-code").iterdir() if path.name.endswith(".tmp")]


def _small_files_only() -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384))


def test_a_code_cache_that_cannot_be_written_whole_keeps_no_partial_file(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    done = subprocess.run(
        [sys.executable, "-c", CODE],
        env=_env(volume, cache),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_small_files_only,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[1] == str(_copies(volume, cache) / "gen-a" / "a.py")
    assert list((cache / "boot-code").iterdir()) == []


def test_an_unwritable_code_cache_still_pins_the_copy(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "boot-code").write_text("a file where the folder would be\n")  # unwritable, even for root
    done = _start(_env(volume, cache))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[1] == str(_copies(volume, cache) / "gen-a" / "a.py")


def test_the_boot_folder_holds_the_copy_code(volume: VolumeLayout) -> None:
    boot = Path(consumer_env(layout=volume, project=PROJECT, python_version=PY, mount=None).variables["PYTHONPATH"])
    assert (boot / "volume_cli_local_copy.py").read_bytes() == Path(local_copy.__file__).read_bytes()


SLOW_BUILDER = """
import sys, time
from volume_cli import local_copy
original = local_copy.TreeCopy._copy_file
def slow(self, *args):
    time.sleep(0.05)
    return original(self, *args)
local_copy.TreeCopy._copy_file = slow
local_copy.local_generation(sys.argv[1], project="copied", python_version=sys.argv[3], cache=sys.argv[2])
"""


def test_a_builder_killed_mid_copy_leaves_nothing_in_use_and_the_next_start_converges(
    layout: VolumeLayout, tmp_path: Path
) -> None:
    generation = os.path.realpath(_generation(layout, "gen-a", "A", extra_files=100))
    switch_current(layout, PROJECT, PY, "gen-a")
    cache = tmp_path / "cache"
    environment = {**os.environ, "PYTHONPATH": REPO, "VOLUME_CLI_LOCAL_COPY": "1"}
    builder = subprocess.Popen([sys.executable, "-c", SLOW_BUILDER, generation, str(cache), PY], env=environment)
    copies = _copies(layout, cache)
    deadline = time.monotonic() + 30
    while not any(path.name.startswith(".tmp-") for path in (copies.iterdir() if copies.is_dir() else [])):
        assert time.monotonic() < deadline and builder.poll() is None
        time.sleep(0.01)
    time.sleep(0.2)  # some files copied, most not
    builder.kill()
    builder.wait()
    assert not (copies / "gen-a").exists()  # the half copy is only ever in its private folder
    done = _start(_env(layout, cache))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[:2] == ["AA", str(copies / "gen-a" / "a.py")]
    assert sorted(path.name for path in copies.iterdir()) == ["gen-a", "gen-a.lock"]
    assert len(list((copies / "gen-a" / "pkg").iterdir())) == 101


def test_a_copy_that_would_not_fit_the_disk_is_not_started(volume: VolumeLayout, tmp_path: Path) -> None:
    record = volume.root / ".metadata" / "projects" / PROJECT / "generations" / "gen-a.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"entries": [{"size_bytes": 1 << 60}]}))
    cache = tmp_path / "cache"
    line = _one_fallback_line(_start(_env(volume, cache, VOLUME_CLI_LOCAL_COPY_MAX_MB="1e15")), volume)
    assert "MB to spare" in line
    assert [path.name for path in _copies(volume, cache).iterdir()] == ["gen-a.lock"]


def test_a_killed_builders_folder_of_an_older_generation_is_removed(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    abandoned = _copies(volume, cache) / ".tmp-gen-old-0123abcd"
    (abandoned / "pkg").mkdir(parents=True)
    assert _start(_env(volume, cache)).returncode == 0
    assert not abandoned.exists()


def test_env_local_cache_option_also_places_the_copy(volume: VolumeLayout, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    printed = consumer_env(layout=volume, project=PROJECT, python_version=PY, mount=None, local_cache=chosen)
    assert printed.variables["VOLUME_CLI_LOCAL_CACHE"] == str(chosen)
    environment = {**_env(volume, tmp_path / "elsewhere"), **printed.variables}
    done = _start(environment)
    assert done.stdout.split()[1] == str(_copies(volume, chosen) / "gen-a" / "a.py"), done.stderr


def test_a_boot_without_the_copy_code_imports_from_the_volume_without_a_word(
    volume: VolumeLayout, tmp_path: Path
) -> None:
    environment = _env(volume, tmp_path / "cache")
    (Path(environment["PYTHONPATH"]) / "volume_cli_local_copy.py").unlink()  # as an older install's boot
    done = _start(environment)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split()[:2] == ["AA", str(generation_dir(volume, PROJECT, PY, "gen-a").resolve() / "a.py")]


def test_a_broken_copy_module_in_the_boot_folder_still_imports_from_the_volume(
    volume: VolumeLayout, tmp_path: Path
) -> None:
    environment = _env(volume, tmp_path / "cache")
    sibling = Path(environment["PYTHONPATH"]) / "volume_cli_local_copy.py"
    for broken in ("def broken(:\n", "def local_generation(*args, **kwargs):\n    raise LookupError('a bug')\n"):
        sibling.write_text(broken)
        _one_fallback_line(_start(environment), volume)


_EXTENSION = """
#include <Python.h>
extern int vendor_value(void);
static PyObject *value(PyObject *self, PyObject *args) { return PyLong_FromLong(vendor_value() + 1); }
static PyMethodDef methods[] = {{"value", value, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef definition = {PyModuleDef_HEAD_INIT, "_C", NULL, -1, methods};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&definition); }
"""


def _wheels_reaching_each_other_by_origin(folder: Path, scratch: Path) -> None:
    """vendorlib plays nvidia; user/_C finds vendorlib/lib/libvendor.so by $ORIGIN/../vendorlib/lib."""
    from tests.wheelfactory import build_wheel, compile_extension, compile_shared_library

    vendor = compile_shared_library("int vendor_value(void) { return 20; }\n", scratch / "libvendor.so")
    files = {"vendorlib/__init__.py": "", "vendorlib/lib/libvendor.so": vendor.read_bytes()}
    build_wheel(folder, "vendorlib", "1.0", tag="py3-none-manylinux_2_17_x86_64", files=files)
    extension = compile_extension(
        "_C", _EXTENSION, scratch / "ext", rpath="$ORIGIN/../vendorlib/lib", libraries=[vendor]
    )
    files = {"user/__init__.py": "from ._C import value\n", "user/_C.abi3.so": extension.read_bytes()}
    tag = f"cp{PY.replace('.', '')}-abi3-manylinux_2_17_x86_64"
    build_wheel(folder, "user", "1.0", tag=tag, requires=["vendorlib"], files=files)


def test_origin_relative_native_libraries_load_from_the_copy(layout: VolumeLayout, tmp_path: Path) -> None:
    from tests.helpers import Projects
    from tests.wheelfactory import IndexServer, gcc_available
    from volume_cli.deps import install
    from volume_cli.progress import NullProgress

    if not gcc_available():
        pytest.skip("needs gcc and Python headers")
    _wheels_reaching_each_other_by_origin(tmp_path / "wheels", tmp_path / "build")
    with IndexServer(tmp_path / "wheels") as index:
        project = Projects(tmp_path / "projects").make("origin", {"main": {"packages": ["user"]}})
        uv_cache = Path(os.environ["UV_CACHE_DIR"])
        install(layout=layout, project=project, mirror=index.url, cache_dir=uv_cache, progress=NullProgress())
    variables = consumer_env(layout=layout, project="origin", python_version=PY, mount=None).variables
    base = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    cache = tmp_path / "cache"
    environment = {**base, **variables, "VOLUME_CLI_LOCAL_COPY": "1", "VOLUME_CLI_LOCAL_CACHE": str(cache)}
    done = _start(environment, "import user; print(user.value(), user.__file__)")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    value, path = done.stdout.split()
    assert value == "21" and path.startswith(str(cache / "deps"))


@pytest.mark.parametrize("version", ["3.10", "3.12", "3.13"])
def test_the_boot_copies_on_other_worker_pythons(layout: VolumeLayout, tmp_path: Path, version: str) -> None:
    from tests.wheelfactory import pyenv_python

    python = pyenv_python(version)
    if python is None:
        pytest.skip(f"needs a pyenv CPython {version}")
    folder = generation_dir(layout, PROJECT, version, "gen-a")
    folder.mkdir(parents=True)
    (folder / "a.py").write_text("V = 'A'\n")
    switch_current(layout, PROJECT, version, "gen-a")
    variables = consumer_env(layout=layout, project=PROJECT, python_version=version, mount=None).variables
    cache = tmp_path / "cache"
    environment = {"PATH": os.environ["PATH"], **variables}
    environment |= {"VOLUME_CLI_LOCAL_COPY": "1", "VOLUME_CLI_LOCAL_CACHE": str(cache)}
    done = subprocess.run(
        [str(python), "-c", "import a; print(a.__file__)"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.strip().startswith(str(cache / "deps"))


def test_every_copy_of_the_local_copy_names_agrees() -> None:
    from volume_cli import fileops, runtime, worker_boot

    assert worker_boot.LOCAL_COPY_FILE == runtime.LOCAL_COPY_FILE == "volume_cli_local_copy.py"
    assert local_copy.TRASH_PREFIX == fileops.TRASH_PREFIX
    assert runtime.LOCAL_CACHE_ENV == worker_boot.LOCAL_CACHE_ENV
    assert runtime.BOOT_CODE == worker_boot.BOOT_CODE
    assert inspect.getsource(runtime._run_sibling) == inspect.getsource(worker_boot._run_sibling)


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("holding", flush=True)
time.sleep(60)
"""


def test_a_copy_a_running_process_holds_is_never_removed(volume: VolumeLayout, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    held = _copies(volume, cache) / "gen-a"
    held.mkdir(parents=True)
    (held / "a.py").write_text("V = 'HELD'\n")
    (held / local_copy.MARKER).write_text(json.dumps({"source": "/another/mount/gen-a", "files": 1}))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(held / local_copy.MARKER)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        assert "is in use" in _one_fallback_line(_start(_env(volume, cache)), volume)
        assert (held / "a.py").read_text() == "V = 'HELD'\n"
    finally:
        holder.kill()
        holder.wait()
