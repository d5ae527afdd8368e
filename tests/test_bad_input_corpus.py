"""A corpus of hostile and broken project files: each one gives a clean ``error:`` naming the file.

Every case is one file written into an otherwise valid project. ``projects check`` must exit 1 or 2
within a few seconds with an ``error:`` line, name the bad file, and never print a traceback or
"internal error" (an alias bomb used to hang, deep nesting gave a RecursionError, ``sys.exit`` in a
plugin ended the CLI with no output).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.helpers import CliResult, ProjectsFolder

GOOD_PROJECT = 'name: victim\npython_version: "3.11"\n'
GOOD_DEPS = "groups:\n  main:\n    packages:\n      - six==1.17.0\n"

_ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + level)}: &{chr(98 + level)} [{', '.join(['*' + chr(97 + level)] * 9)}]\n" for level in range(9)
)


def _nested_lists(depth: int) -> str:
    return "name: victim\npython_version: '3.11'\ndescription: " + "[" * depth + "]" * depth + "\n"


def _nested_maps(depth: int) -> str:
    return "groups: " + "{a: " * depth + "b" + "}" * depth + "\n"


def _block_nesting(depth: int) -> str:
    return "".join(" " * level + f"k{level}:\n" for level in range(depth)) + " " * depth + "v\n"


def _url_model(dest: str) -> str:
    return f"models:\n  - source: url\n    url: https://example.com/x.bin\n    dest: {dest}\n"


def _plugin_class(class_name: str, body: str = "", *, name: str | None = "victim", python: str | None = "3.11") -> str:
    lines = [f"class {class_name}(Project):\n"]
    if name is not None:
        lines.append(f"    name = {name!r}\n")
    if python is not None:
        lines.append(f"    python_version = {python!r}\n")
    return "".join(lines) + body + "\n"


def _plugin_url_model(dest: str) -> str:
    return f"    from volume_cli import UrlModel\n    models = [UrlModel(url='https://example.com/x', dest={dest!r})]\n"


# (case id, file name, content); the content is bytes so binary and UTF-16 cases are exact.
YAML_CASES: list[tuple[str, str, bytes]] = [
    ("alias-bomb-project", "project.yaml", (GOOD_PROJECT + "description: " + "\n" + _ALIAS_BOMB).encode()),
    ("alias-bomb-deps", "dependencies.yaml", ("metadata:\n  description: x\n" + _ALIAS_BOMB).encode()),
    ("alias-bomb-top", "dependencies.yaml", _ALIAS_BOMB.encode()),
    ("recursive-alias", "dependencies.yaml", b"groups: &g\n  main: *g\n"),
    ("nesting-lists-10000", "project.yaml", _nested_lists(10_000).encode()),
    ("nesting-maps-10000", "dependencies.yaml", _nested_maps(10_000).encode()),
    ("nesting-block-3000", "dependencies.yaml", _block_nesting(3000).encode()),
    ("python-3.99", "project.yaml", b'name: victim\npython_version: "3.99"\n'),
    ("python-3.08", "project.yaml", b'name: victim\npython_version: "3.08"\n'),
    ("python-2.7", "project.yaml", b'name: victim\npython_version: "2.7"\n'),
    ("python-3.7", "project.yaml", b'name: victim\npython_version: "3.7"\n'),
    ("python-4.0", "project.yaml", b'name: victim\npython_version: "4.0"\n'),
    ("python-3.15", "project.yaml", b'name: victim\npython_version: "3.15"\n'),
    ("python-unquoted-float", "project.yaml", b"name: victim\npython_version: 3.10\n"),
    ("python-date", "project.yaml", b"name: victim\npython_version: 2024-01-01\n"),
    ("python-metadata-3.99", "dependencies.yaml", (GOOD_DEPS + "metadata:\n  python_version: '3.99'\n").encode()),
    ("binary", "project.yaml", bytes(range(256)) * 4),
    ("nul-bytes", "dependencies.yaml", b"groups:\x00\x00\n"),
    ("utf16-bom", "project.yaml", GOOD_PROJECT.encode("utf-16")),
    ("utf16-le-no-bom", "dependencies.yaml", GOOD_DEPS.encode("utf-16-le")),
    ("bad-utf8", "project.yaml", b"name: victim\xff\xfe\npython_version: '3.11'\n"),
    ("empty-project", "project.yaml", b""),
    ("empty-deps", "dependencies.yaml", b""),
    ("only-comments", "dependencies.yaml", b"# nothing here\n"),
    ("list-top-level", "project.yaml", b"- name: victim\n- python_version: '3.11'\n"),
    ("list-top-level-deps", "dependencies.yaml", b"- six\n"),
    ("scalar-top-level", "dependencies.yaml", b"just a string\n"),
    ("huge-int", "project.yaml", b"name: victim\npython_version: " + b"9" * 5000 + b"\n"),
    (
        "huge-int-deps",
        "dependencies.yaml",
        b"groups:\n  main:\n    packages: [six]\n    no_deps: " + b"1" * 6000 + b"\n",
    ),
    ("huge-float", "dependencies.yaml", b"groups:\n  main:\n    packages: [six]\n    no_deps: 1e999999\n"),
    ("tabs", "dependencies.yaml", b"groups:\n\tmain:\n\t\tpackages: [six]\n"),
    ("duplicate-keys", "project.yaml", b"name: victim\nname: other\npython_version: '3.11'\n"),
    ("duplicate-group", "dependencies.yaml", GOOD_DEPS.encode() + b"  main:\n    packages: [six]\n"),
    ("list-key", "dependencies.yaml", b"groups:\n  ? [a, b]\n  : packages: [six]\n"),
    ("map-key", "project.yaml", b"? {a: 1}\n: x\nname: victim\npython_version: '3.11'\n"),
    ("int-key", "dependencies.yaml", b"groups:\n  1:\n    packages: [six]\n"),
    ("null-key", "dependencies.yaml", b"groups:\n  ~:\n    packages: [six]\n"),
    ("bool-group-name", "dependencies.yaml", b"groups:\n  yes:\n    packages: [six]\n"),
    ("python-tag", "project.yaml", b"name: !!python/object:os.system victim\npython_version: '3.11'\n"),
    ("bad-binary-tag", "project.yaml", b"name: !!binary '%%%'\npython_version: '3.11'\n"),
    ("bad-timestamp-tag", "dependencies.yaml", b"groups: !!timestamp 'not a date'\n"),
    ("bad-int-tag", "dependencies.yaml", b"groups: !!int 'twelve'\n"),
    ("unknown-tag", "dependencies.yaml", b"groups: !custom {main: {packages: [six]}}\n"),
    ("two-documents", "project.yaml", (GOOD_PROJECT + "---\n" + GOOD_PROJECT).encode()),
    ("unclosed-flow", "dependencies.yaml", b"groups: {main: {packages: [six\n"),
    ("unclosed-quote", "project.yaml", b'name: "victim\npython_version: "3.11"\n'),
    ("huge-file", "dependencies.yaml", GOOD_DEPS.encode() + b"# " + b"x" * (3 * 1024 * 1024) + b"\n"),
    ("long-key", "dependencies.yaml", b"groups:\n  " + b"g" * 100_000 + b":\n    packages: [six]\n"),
    ("null-name", "project.yaml", b"name:\npython_version: '3.11'\n"),
    ("name-traversal", "project.yaml", b"name: ../../etc\npython_version: '3.11'\n"),
    ("name-list", "project.yaml", b"name: [victim]\npython_version: '3.11'\n"),
    ("unknown-key", "project.yaml", (GOOD_PROJECT + "pyhton_version: '3.11'\n").encode()),
    ("groups-empty", "dependencies.yaml", b"groups: {}\n"),
    ("groups-list", "dependencies.yaml", b"groups: [six]\n"),
    ("packages-empty", "dependencies.yaml", b"groups:\n  main:\n    packages: []\n"),
    ("packages-string", "dependencies.yaml", b"groups:\n  main:\n    packages: six\n"),
    ("bad-requirement", "dependencies.yaml", b"groups:\n  main:\n    packages: ['six=>=1']\n"),
    ("url-requirement", "dependencies.yaml", b"groups:\n  main:\n    packages: ['six @ https://x/six.whl']\n"),
    ("requirement-int", "dependencies.yaml", b"groups:\n  main:\n    packages: [12]\n"),
    ("index-url-ftp", "dependencies.yaml", GOOD_DEPS.encode() + b"    index_url: ftp://example.com\n"),
    ("install-order-unknown", "dependencies.yaml", GOOD_DEPS.encode() + b"install_order: [main, other]\n"),
    ("merge-key-bad", "dependencies.yaml", b"groups:\n  main:\n    <<: [1, 2]\n    packages: [six]\n"),
    ("model-dest-huggingface", "project.yaml", (GOOD_PROJECT + _url_model("huggingface/hub/x.bin")).encode()),
    ("model-dest-staging", "project.yaml", (GOOD_PROJECT + _url_model(".volume-cli-staging/x.bin")).encode()),
    ("model-dest-torch", "project.yaml", (GOOD_PROJECT + _url_model("torch/x.bin")).encode()),
    ("model-dest-modelscope", "project.yaml", (GOOD_PROJECT + _url_model("modelscope/x.bin")).encode()),
    ("model-dest-absolute", "project.yaml", (GOOD_PROJECT + _url_model("/etc/passwd")).encode()),
    ("model-dest-dotdot", "project.yaml", (GOOD_PROJECT + _url_model("a/../../x")).encode()),
    ("model-not-a-list", "project.yaml", (GOOD_PROJECT + "models: {source: url}\n").encode()),
    ("model-unknown-source", "project.yaml", (GOOD_PROJECT + "models:\n  - source: ftp\n").encode()),
    ("model-source-list", "project.yaml", (GOOD_PROJECT + "models:\n  - source: [url]\n").encode()),
    (
        "dependencies-file-traversal",
        "project.yaml",
        (GOOD_PROJECT + "dependencies_file: ../../nowhere.yaml\n").encode(),
    ),
    ("dependencies-file-dir", "project.yaml", (GOOD_PROJECT + "dependencies_file: .\n").encode()),
]


PLUGIN_HEADER = "from volume_cli import Project\n\n"
PLUGIN_CASES: list[tuple[str, str]] = [
    ("sys-exit-3", "import sys\nsys.exit(3)\n"),
    ("sys-exit-0", "import sys\nsys.exit(0)\n"),
    ("sys-exit-message", "raise SystemExit('bye')\n"),
    ("base-exception", "class Odd(BaseException):\n    pass\n\nraise Odd('odd')\n"),
    ("syntax-error", "class Broken(Project)\n    name = 'victim'\n"),
    ("import-missing", "import module_that_does_not_exist_anywhere\n"),
    ("recursion", "def f(n):\n    return f(n + 1)\n\nf(0)\n"),
    ("no-class", "X = 1\n"),
    ("two-classes", _plugin_class("A") + _plugin_class("B")),
    ("models-int", _plugin_class("A", "    models = 5\n")),
    ("models-of-garbage", _plugin_class("A", "    models = [object()]\n")),
    ("endpoints-int", _plugin_class("A", "    hf_endpoints = 5\n")),
    ("endpoints-generator-raises", _plugin_class("A", "    hf_endpoints = (1 / 0 for _ in [1])\n")),
    ("name-int", _plugin_class("A", "    name = 123\n", name=None)),
    ("python-3.99", _plugin_class("A", "    python_version = '3.99'\n", python=None)),
    ("python-float", _plugin_class("A", "    python_version = 3.10\n", python=None)),
    ("init-raises", _plugin_class("A", "    def __init__(self):\n        raise RuntimeError('no')\n")),
    ("init-exits", _plugin_class("A", "    def __init__(self):\n        raise SystemExit(4)\n")),
    ("description-raises", _plugin_class("A", "    description = property(lambda self: 1 / 0)\n")),
    ("null-bytes", "\x00\x00\x00"),
    ("dest-staging", _plugin_class("A", _plugin_url_model(".volume-cli-staging/x"))),
]


class _Timeout(Exception):
    pass


@pytest.fixture
def time_limit() -> Iterator[Callable[[], float]]:
    """Fail instead of hanging: the alias bomb used to run for minutes."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise _Timeout("the CLI did not answer within 20 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    started = time.monotonic()
    try:
        yield lambda: time.monotonic() - started
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _victim(projects_folder: ProjectsFolder) -> Path:
    folder = projects_folder.path / "victim"
    folder.mkdir()
    (folder / "project.yaml").write_text(GOOD_PROJECT)
    (folder / "dependencies.yaml").write_text(GOOD_DEPS)
    return folder


def _assert_clean_error(result: CliResult, bad_file: Path, elapsed: float) -> None:
    output = result.stdout + result.stderr
    assert result.exit_code in (1, 2), output
    assert "error:" in result.stderr, output
    assert "internal error" not in output and "Traceback" not in output, output
    assert str(bad_file) in output, output
    assert elapsed < 10, f"took {elapsed:.1f} s"


@pytest.mark.parametrize(("file_name", "content"), [case[1:] for case in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_gives_a_clean_error(
    file_name: str,
    content: bytes,
    projects_folder: ProjectsFolder,
    cli: Callable[..., CliResult],
    time_limit: Callable[[], float],
) -> None:
    folder = _victim(projects_folder)
    bad_file = folder / file_name
    bad_file.write_bytes(content)
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
    _assert_clean_error(result, bad_file, time_limit())


@pytest.mark.parametrize("source", [case[1] for case in PLUGIN_CASES], ids=[case[0] for case in PLUGIN_CASES])
def test_bad_plugin_gives_a_clean_error(
    source: str, projects_folder: ProjectsFolder, cli: Callable[..., CliResult], time_limit: Callable[[], float]
) -> None:
    folder = _victim(projects_folder)
    (folder / "project.yaml").unlink()
    bad_file = folder / "project.py"
    bad_file.write_text(PLUGIN_HEADER + source)
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
    _assert_clean_error(result, bad_file, time_limit())


def test_corpus_is_large() -> None:
    # The corpus had five cases; ours covers the listed ones and their relatives.
    assert len(YAML_CASES) + len(PLUGIN_CASES) >= 80


SPECIAL_FILES: dict[str, Callable[[Path], None]] = {
    "deps-is-a-folder": lambda path: path.mkdir(),
    "deps-is-a-fifo": lambda path: os.mkfifo(path),
    "deps-dangling-symlink": lambda path: path.symlink_to(path.parent / "nowhere.yaml"),
    "deps-symlink-loop": lambda path: path.symlink_to(path),
    "deps-unreadable": lambda path: (path.write_text(GOOD_DEPS), os.chmod(path, 0), _readable_only_by_root(path)),
}


def _readable_only_by_root(path: Path) -> None:
    if os.geteuid() == 0:
        # root reads mode-0 files; a folder in its place gives the same kind of read failure.
        path.unlink()
        path.mkdir()


@pytest.mark.parametrize("how", sorted(SPECIAL_FILES))
def test_dependencies_yaml_that_is_not_a_file(
    how: str, projects_folder: ProjectsFolder, cli: Callable[..., CliResult], time_limit: Callable[[], float]
) -> None:
    folder = _victim(projects_folder)
    bad_file = folder / "dependencies.yaml"
    bad_file.unlink()
    SPECIAL_FILES[how](bad_file)
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
    _assert_clean_error(result, bad_file, time_limit())


def test_project_yaml_that_is_a_folder_is_reported(
    projects_folder: ProjectsFolder, cli: Callable[..., CliResult], time_limit: Callable[[], float]
) -> None:
    folder = _victim(projects_folder)
    (folder / "project.yaml").unlink()
    (folder / "project.yaml").mkdir()
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
    _assert_clean_error(result, folder, time_limit())


RICH_PROJECT = (
    'name: victim\npython_version: "3.11"\ndescription: a project\nhf_endpoints: [https://hf-mirror.com]\n'
    "models:\n  - source: url\n    url: https://example.com/x.bin\n    dest: victim/x.bin\n"
    "  - source: huggingface\n    repo_id: org/model\n    revision: main\n    allow_patterns: ['*.json']\n"
)
RICH_DEPS = (
    "groups:\n  torch:\n    index_url: https://download.pytorch.org/whl/cu121\n    packages: [torch==2.4.1]\n"
    "  main:\n    packages:\n      - six==1.17.0\n      - requests>=2\n    no_deps: false\n"
    "install_order: [torch, main]\nmetadata:\n  python_version: '3.11'\n"
)
_NASTY = [
    b"&a ",
    b"*a",
    b"[",
    b"{",
    b"]",
    b"}",
    b"!!binary ",
    b"!!python/none",
    b"\t",
    b"\x00",
    b"\xff",
    b"- ",
    b": ",
    b"? ",
    b"|",
    b">",
    b"'",
    b'"',
    b"#",
    b"%YAML 1.1\n---\n",
    b"<<: *a",
    b"9" * 5000,
    b"\n" + b"  " * 40,
    b"~",
]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 4)):
        position = rng.randint(0, len(data))
        choice = rng.random()
        if choice < 0.4:
            data = data[:position] + rng.choice(_NASTY) + data[position:]
        elif choice < 0.6:
            data = data[:position] + data[position + rng.randint(1, 20) :]
        elif choice < 0.8 and data:
            data = data[:position] + bytes([rng.randint(0, 255)]) + data[position + 1 :]
        else:
            data = data[:position]
    return data


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VOLUME_CLI_SLOW_TESTS") != "1", reason="set VOLUME_CLI_SLOW_TESTS=1")
@pytest.mark.parametrize("file_name", ["project.yaml", "dependencies.yaml"])
def test_randomly_mutated_files_never_crash(
    file_name: str, projects_folder: ProjectsFolder, cli: Callable[..., CliResult]
) -> None:
    rng = random.Random(int(os.environ.get("VOLUME_CLI_FUZZ_SEED", "9")))
    folder = _victim(projects_folder)
    (folder / "project.yaml").write_text(RICH_PROJECT)
    (folder / "dependencies.yaml").write_text(RICH_DEPS)
    good = (folder / file_name).read_bytes()
    tried = 0
    for _ in range(int(os.environ.get("VOLUME_CLI_FUZZ_RUNS", "1500"))):
        (folder / file_name).write_bytes(_mutate(good, rng))
        result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
        output = result.stdout + result.stderr
        assert result.exit_code in (0, 1, 2), output
        assert "internal error" not in output and "Traceback" not in output, (folder / file_name).read_bytes()
        tried += 1
    assert tried > 0
