"""Tiny real wheels and a local PEP 503 index for tests.

``build_wheel`` writes a valid wheel (METADATA, WHEEL, RECORD with sha256
hashes, optional top_level.txt) that uv and pip install like any other.
``IndexServer`` serves a folder of wheels as a simple index on 127.0.0.1, so
two servers can serve different builds of one name. ``compile_shared_library``
and ``compile_extension`` build native code with gcc for the $ORIGIN tests.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

FileContent = str | bytes


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def module_name(dist_name: str) -> str:
    return canonicalize_name(dist_name).replace("-", "_")


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    *,
    files: Mapping[str, FileContent] | None = None,
    requires: Sequence[str] = (),
    top_level: Sequence[str] | None = None,
    tag: str = "py3-none-any",
    requires_python: str | None = None,
    build_tag: str | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``out_dir`` and return its path.

    Without ``files`` the wheel holds one package named after the
    distribution whose ``__init__`` exposes ``VERSION`` (and ``BUILD`` when
    ``build_tag`` is set, so two builds of one version can be told apart).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    escaped = module_name(name)
    if files is None:
        marker = f"BUILD = {build_tag!r}\n" if build_tag else ""
        files = {f"{escaped}/__init__.py": f"VERSION = {version!r}\n{marker}"}
    dist_info = f"{escaped}-{version}.dist-info"
    metadata_lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        metadata_lines.append(f"Requires-Python: {requires_python}")
    metadata_lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    contents: dict[str, bytes] = {
        path: data.encode() if isinstance(data, str) else data for path, data in files.items()
    }
    contents[f"{dist_info}/METADATA"] = ("\n".join(metadata_lines) + "\n").encode()
    root_is_purelib = "true" if tag.endswith("-none-any") else "false"
    wheel_lines = ["Wheel-Version: 1.0", "Generator: wheelfactory", f"Root-Is-Purelib: {root_is_purelib}"]
    wheel_lines += [f"Tag: {python}-{abi}-{platform}" for python, abi, platform in _expand_tag(tag)]
    contents[f"{dist_info}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    if top_level is not None:
        contents[f"{dist_info}/top_level.txt"] = ("\n".join(top_level) + "\n").encode()
    record_path = f"{dist_info}/RECORD"
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record_lines.append(f"{record_path},,")
    contents[record_path] = ("\n".join(record_lines) + "\n").encode()
    build = f"-{build_tag}" if build_tag and build_tag[0].isdigit() else ""
    wheel_path = out_dir / f"{escaped}-{version}{build}-{tag}.whl"
    with zipfile.ZipFile(wheel_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in contents.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if path.endswith(".so") or ".so." in path else 0o644) << 16
            archive.writestr(info, data)
    return wheel_path


def _expand_tag(tag: str) -> list[tuple[str, str, str]]:
    python, abi, platform = tag.split("-")
    return [(p, a, pl) for p in python.split(".") for a in abi.split(".") for pl in platform.split(".")]


# -- native code ----------------------------------------------------------------
def compile_shared_library(source: str, out: Path, *, rpath: str | None = None, libraries: Sequence[Path] = ()) -> Path:
    """Compile C ``source`` into the shared library ``out`` with gcc."""
    out.parent.mkdir(parents=True, exist_ok=True)
    source_path = out.with_suffix(".c")
    source_path.write_text(source)
    command = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(source_path)]
    for library in libraries:
        command += [f"-L{library.parent}", f"-l:{library.name}"]
    if rpath:
        command.append(f"-Wl,-rpath,{rpath}")
    subprocess.run(command, check=True, capture_output=True, text=True)
    source_path.unlink()
    return out


def compile_extension(
    module: str, source: str, out_dir: Path, *, rpath: str | None = None, libraries: Sequence[Path] = ()
) -> Path:
    """Build a limited-API extension ``<module>.abi3.so`` against the running Python's headers."""
    include = sysconfig.get_paths()["include"]
    out = out_dir / f"{module}.abi3.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    source_path = out_dir / f"{module}.c"
    source_path.write_text(source)
    command = [
        "gcc",
        "-shared",
        "-fPIC",
        "-O1",
        "-DPy_LIMITED_API=0x03080000",
        f"-I{include}",
        "-o",
        str(out),
        str(source_path),
    ]
    for library in libraries:
        command += [f"-L{library.parent}", f"-l:{library.name}"]
    if rpath:
        command.append(f"-Wl,-rpath,{rpath}")
    subprocess.run(command, check=True, capture_output=True, text=True)
    source_path.unlink()
    return out


def extension_source(module: str, call: str) -> str:
    """C source of a module ``module`` whose ``value()`` returns ``call`` (an int expression)."""
    return f"""
#include <Python.h>
extern int vendor_value(void);
static PyObject *value(PyObject *self, PyObject *args) {{ return PyLong_FromLong({call}); }}
static PyMethodDef methods[] = {{{{"value", value, METH_NOARGS, ""}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef definition = {{PyModuleDef_HEAD_INIT, "{module}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_{module}(void) {{ return PyModule_Create(&definition); }}
"""


def gcc_available() -> bool:
    return shutil.which("gcc") is not None and Path(sysconfig.get_paths()["include"], "Python.h").is_file()


# -- a PEP 503 index ----------------------------------------------------------------
class IndexServer:
    """Serves the wheels of ``folder`` at ``<url>/<name>/`` (PEP 503) on 127.0.0.1.

    The listing is computed per request, so wheels added later are served.
    ``stop()`` closes the port; ``requests`` counts every request served.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        self._described: dict[tuple[str, int, int], tuple[str, bytes | None]] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Headers and body go out in two writes; with Nagle on, each small
            # response waits for a delayed ACK (~40 ms) and a resolution crawls.
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            head_only = False

            def do_HEAD(self) -> None:
                self.head_only = True
                try:
                    self._serve()
                finally:
                    self.head_only = False  # the connection is kept alive for the next request

            def do_GET(self) -> None:
                self._serve()

            def _serve(self) -> None:
                server.requests.append(self.path)
                parts = [part for part in self.path.split("?")[0].split("/") if part]
                if len(parts) == 2 and parts[0] == "files" and parts[1].endswith(".whl.metadata"):
                    self._send_bytes(_wheel_metadata(server.folder / parts[1].removesuffix(".metadata")), "text/plain")
                elif len(parts) == 2 and parts[0] == "files":
                    path = server.folder / parts[1]
                    self._send_bytes(path.read_bytes() if path.is_file() else None, "application/octet-stream")
                elif parts == ["simple"]:
                    self._send_html(server._root_page())
                elif len(parts) == 2 and parts[0] == "simple":
                    page = server._project_page(parts[1])
                    if page is None:
                        self.send_error(404)
                    else:
                        self._send_html(page)
                else:
                    self.send_error(404)

            def _send_html(self, body: str) -> None:
                self._send_bytes(body.encode(), "text/html")

            def _send_bytes(self, data: bytes | None, content_type: str) -> None:
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not self.head_only:
                    self.wfile.write(data)

        self._handler = Handler
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple"

    def start(self) -> IndexServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="index-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> IndexServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wheels(self) -> dict[str, list[Path]]:
        by_name: dict[str, list[Path]] = {}
        for path in sorted(self.folder.glob("*.whl")):
            name = canonicalize_name(parse_wheel_filename(path.name)[0])
            by_name.setdefault(name, []).append(path)
        return by_name

    def _describe(self, path: Path) -> tuple[str, bytes | None]:
        """sha256 and METADATA of a wheel, cached while the file is unchanged (big wheels in the bench)."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        cached = self._described.get(key)
        if cached is None:
            cached = (hashlib.sha256(path.read_bytes()).hexdigest(), _wheel_metadata(path))
            self._described[key] = cached
        return cached

    def _root_page(self) -> str:
        links = "".join(f'<a href="/simple/{name}/">{name}</a>\n' for name in self._wheels())
        return f"<!DOCTYPE html><html><body>\n{links}</body></html>"

    def _project_page(self, project: str) -> str | None:
        wheels = self._wheels().get(canonicalize_name(project))
        if not wheels:
            return None
        links = []
        for path in wheels:
            digest, metadata = self._describe(path)
            core = f' data-core-metadata="sha256={hashlib.sha256(metadata).hexdigest()}"' if metadata else ""
            href = f"/files/{html.escape(path.name)}#sha256={digest}"
            links.append(f'<a href="{href}"{core}>{html.escape(path.name)}</a>\n')
        return "<!DOCTYPE html><html><body>\n" + "".join(links) + "</body></html>"


def _wheel_metadata(path: Path) -> bytes | None:
    """The METADATA of a wheel (PEP 658), so resolvers need not download it."""
    if not path.is_file():
        return None
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                return archive.read(name)
    return None


@contextmanager
def serve(folder: Path) -> Iterator[IndexServer]:
    server = IndexServer(folder).start()
    try:
        yield server
    finally:
        server.stop()


def pyenv_python(version: str) -> Path | None:
    """A pyenv CPython ``version`` (e.g. '3.10'), found generically, or None."""
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        for candidate in sorted(Path(root, "versions").glob(f"{version}.*"), reverse=True):
            binary = candidate / "bin" / f"python{version}"
            if binary.is_file() and candidate.name.split(".")[:2] == version.split("."):
                return binary
    return None


def running_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
