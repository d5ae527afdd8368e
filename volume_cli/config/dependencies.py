"""``dependencies.yaml``: named groups of requirements, each with its own index."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from volume_cli.config.located_yaml import LocatedDocument, load_located_yaml
from volume_cli.config.strict import StrictModel, validation_problems
from volume_cli.errors import ConfigError

PYPI_SIMPLE_URL = "https://pypi.org/simple"
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PYTHON_VERSION = re.compile(r"^3\.(0|[1-9]\d?)$")
# CPython minors uv can build a lock for; the folder python-deps/pyX.Y is named after it.
SUPPORTED_PYTHON_MINORS = range(8, 15)


def check_python_version(value: str) -> str:
    match = _PYTHON_VERSION.match(value)
    if not match or int(match.group(1)) < SUPPORTED_PYTHON_MINORS[0]:
        raise ValueError(f"python version must look like '3.10' (3.8 or newer), got {value!r}")
    if int(match.group(1)) > SUPPORTED_PYTHON_MINORS[-1]:
        newest = f"3.{SUPPORTED_PYTHON_MINORS[-1]}"
        raise ValueError(f"python version {value!r} is not a CPython release volume-cli supports (3.8 to {newest})")
    return value


def _python_version_as_text(value: object) -> object:
    if isinstance(value, float | int) and not isinstance(value, bool):
        # YAML reads 3.10 as the number 3.1: say so instead of "must be a string".
        meant = "3.10" if value == 3.1 else str(value)
        raise ValueError(
            f'python version must be text; quote it: "{meant}" (YAML reads it unquoted as the number {value!r})'
        )
    return value


def _check_requirement(value: str) -> str:
    try:
        requirement = Requirement(value)
    except InvalidRequirement as exc:
        first_line = str(exc).splitlines()[0]
        raise ValueError(f"invalid requirement {value!r}: {first_line}") from None
    if requirement.url:
        raise ValueError(
            f"requirement {value!r} uses a direct URL; serve the wheel from an index and set the group's index_url"
        )
    return value


def _check_index_url(value: str | None) -> str | None:
    return None if value is None else check_index_url(value)


def check_index_url(value: str) -> str:
    """An index URL with a scheme uv understands and, for http(s), a host; raises ValueError naming the fix."""
    if not re.match(r"^(https?|file)://\S+$", value):
        bare_host = re.match(r"^[a-z0-9.-]+\.[a-z]{2,}(:\d+)?(/\S*)?$", value)
        guess = f" (did you mean https://{value if '/' in value else value + '/simple'}?)" if bare_host else ""
        raise ValueError(f"index URL must start with http://, https:// or file://, got {value!r}{guess}")
    parts = urlsplit(value)
    if parts.scheme != "file" and not parts.hostname:
        raise ValueError(f"index URL {value!r} has no host")
    return value.rstrip("/")


def index_url_warning(value: str) -> str | None:
    """A note for the obvious slip, a mirror's bare host: PyPI-style indexes serve ``/simple``.

    Only an empty path is flagged: other indexes (PyTorch's ``/whl/cu121``) use their own paths.
    """
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.path.strip("/") == "":
        return f"index URL {value} has no path: PyPI mirrors serve /simple (did you mean {value.rstrip('/')}/simple?)"
    return None


def _empty_is_null(value: object) -> object:
    # The original tool's files say `index_url: ""` for "the default index".
    return None if isinstance(value, str) and not value.strip() else value


RequirementText = Annotated[str, AfterValidator(_check_requirement)]
IndexUrl = Annotated[str, AfterValidator(_check_index_url)]
PythonVersion = Annotated[str, BeforeValidator(_python_version_as_text), AfterValidator(check_python_version)]


class DependencyGroup(StrictModel):
    packages: list[RequirementText] = Field(min_length=1)
    index_url: Annotated[IndexUrl | None, BeforeValidator(_empty_is_null)] = None
    extra_index_urls: list[IndexUrl] = Field(default_factory=list)
    no_deps: bool = False
    description: str = ""

    @property
    def requirements(self) -> list[Requirement]:
        return [Requirement(text) for text in self.packages]

    def effective_index_url(self, mirror: str | None) -> str:
        """The group's own index always wins; otherwise the mirror, else PyPI."""
        return self.index_url or mirror or PYPI_SIMPLE_URL


class DependencyMetadata(StrictModel):
    """Informational keys the original tool's users write (created, updated, version, author) are kept, not errors."""

    model_config = ConfigDict(extra="allow", frozen=True, str_strip_whitespace=True)

    python_version: PythonVersion | None = None
    description: str = ""
    project: str | None = None

    @property
    def unknown_keys(self) -> list[str]:
        return sorted(self.model_extra or {})


class DependencyConfig(StrictModel):
    groups: dict[str, DependencyGroup] = Field(min_length=1)
    install_order: list[str] | None = None
    metadata: DependencyMetadata | None = None

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: dict[str, DependencyGroup]) -> dict[str, DependencyGroup]:
        for name in groups:
            if not _GROUP_NAME.match(name):
                raise ValueError(f"group name {name!r} may use letters, digits, '_', '-' and '.' only")
        return groups

    @property
    def ordered_groups(self) -> list[tuple[str, DependencyGroup]]:
        order = self.install_order or list(self.groups)
        return [(name, self.groups[name]) for name in order]

    @property
    def package_count(self) -> int:
        return sum(len(group.packages) for group in self.groups.values())

    def content_hash(self, *, python_version: str, mirror: str | None) -> str:
        """Hash of everything that decides what gets installed.

        The effective index of every group is included, so switching the
        global mirror counts as a change while reformatting the YAML does not.
        """
        payload = {
            "python": python_version,
            "groups": [
                {
                    "name": name,
                    "packages": sorted(_normalised(text) for text in group.packages),
                    "index": group.effective_index_url(mirror),
                    "extra": list(group.extra_index_urls),
                    "no_deps": group.no_deps,
                }
                for name, group in self.ordered_groups
            ],
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()


def _normalised(text: str) -> str:
    requirement = Requirement(text)
    requirement.name = canonicalize_name(requirement.name)
    return str(requirement)


def _duplicate_package_problems(document: LocatedDocument, config: DependencyConfig) -> list[str]:
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for group_name, group in config.groups.items():
        for index, requirement in enumerate(group.requirements):
            name = canonicalize_name(requirement.name)
            if name in first_seen and first_seen[name] != group_name:
                problems.append(
                    document.problem(
                        ("groups", group_name, "packages", index),
                        f"package {name!r} is already in group {first_seen[name]!r}; a package belongs to one group",
                    )
                )
            elif name in first_seen:
                problems.append(
                    document.problem(("groups", group_name, "packages", index), f"package {name!r} is listed twice")
                )
            else:
                first_seen[name] = group_name
    return problems


def _install_order_problems(document: LocatedDocument, config: DependencyConfig) -> list[str]:
    if config.install_order is None:
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(config.install_order):
        if name not in config.groups:
            known = ", ".join(config.groups)
            problems.append(
                document.problem(
                    ("install_order", index), f"names group {name!r}, which does not exist (groups: {known})"
                )
            )
        elif name in seen:
            problems.append(document.problem(("install_order", index), f"lists group {name!r} twice"))
        seen.add(name)
    for name in config.groups:
        if name not in seen:
            problems.append(document.problem(("install_order",), f"leaves out group {name!r}; list every group once"))
    return problems


def load_dependency_config(path: Path, *, plugin_python_version: str | None = None) -> DependencyConfig:
    """Load and validate a ``dependencies.yaml``; every problem is located."""
    hint = f"fix {path.name}, then run: volume-cli projects check"
    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            [f"{path}: file not found"],
            hint=f"create it, e.g.: printf 'groups:\\n  main:\\n    packages: [numpy]\\n' > {path}  "
            "(volume-cli projects new NAME scaffolds a whole project)",
        )
    document = load_located_yaml(path, hint=hint)
    if not isinstance(document.data, dict):
        raise ConfigError([document.problem((), "must be a mapping with a 'groups' key")], hint=hint)
    try:
        config = DependencyConfig.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(document, exc, model=DependencyConfig), hint=hint) from None
    problems = _install_order_problems(document, config) + _duplicate_package_problems(document, config)
    declared = config.metadata.python_version if config.metadata else None
    if plugin_python_version and declared and declared != plugin_python_version:
        problems.append(
            document.problem(
                ("metadata", "python_version"),
                f"says {declared} but the project declares python_version {plugin_python_version}",
            )
        )
    if problems:
        raise ConfigError(problems, hint=hint)
    return config
