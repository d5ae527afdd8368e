"""``setup``: deps install, then models download, with one summary.

Each step runs even when the other failed (they are independent and a user
on a temporary pod wants as much done as possible), but the run as a whole
fails when any step failed: never "done" after a failure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from volume_cli.errors import HookError, VolumeCliError, file_system_error
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.project.definition import ProjectDefinition


@dataclass(frozen=True)
class StepOutcome:
    step: str
    ok: bool
    summary: str
    result: Any = None
    error: str | None = None
    hint: str | None = None


@dataclass(frozen=True)
class SetupResult:
    project: str
    steps: list[StepOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)


def _run_step(name: str, action: Callable[[], tuple[str, Any]]) -> StepOutcome:
    """One step's outcome; a failure is recorded, so the other step's result is still reported."""
    try:
        summary, result = action()
    except VolumeCliError as error:
        return _failed(name, error)
    except OSError as error:
        # Disk full or a read-only volume in one step: the CLI's one error line, and the other step's result kept.
        mapped = file_system_error(error)
        if mapped is None:
            raise
        return _failed(name, mapped)
    return StepOutcome(step=name, ok=True, summary=summary, result=result)


def _failed(name: str, error: VolumeCliError) -> StepOutcome:
    return StepOutcome(step=name, ok=False, summary="failed", error=error.message, hint=error.hint)


def run_setup(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    force: bool = False,
    hf_endpoints: Sequence[str] | None = None,
    modelscope_endpoints: Sequence[str] | None = None,
    progress: Progress,
    wait_seconds: float = 0,
    upgrade: bool = False,
    refresh: bool = False,
    dry_run: bool = False,
    timeout: float = 30.0,
    retries: int = 4,
) -> SetupResult:
    """``timeout``/``retries`` bound the hub requests; uv's are set by the caller (``uv_network``)."""
    from volume_cli.flows.deps import install_deps
    from volume_cli.models import download

    def deps_step() -> tuple[str, Any]:
        progress.step(f"dependencies of {project.name}")
        result = install_deps(
            layout=layout,
            project=project,
            mirror=mirror,
            force=force,
            upgrade=upgrade,
            dry_run=dry_run,
            progress=progress,
            wait_seconds=wait_seconds,
        )
        plan = result.plan
        changes = len(plan.add) + len(plan.upgrade) + len(plan.downgrade) + len(plan.reinstall) + len(plan.remove)
        if dry_run:
            return f"plan: {changes} change(s) (dry run)", result
        if result.noop:
            return f"up to date (generation {result.generation}, {result.package_count} packages)", result
        return f"generation {result.generation}: {changes} change(s), {result.package_count} packages", result

    def models_step() -> tuple[str, Any]:
        progress.step(f"models of {project.name}")
        result = download(
            layout=layout,
            project=project,
            hf_endpoints=hf_endpoints,
            modelscope_endpoints=modelscope_endpoints,
            progress=progress,
            refresh=refresh,
            dry_run=dry_run,
            timeout=timeout,
            retries=retries,
        )
        if not dry_run:
            _run_after_models(layout, project)
        actions = Counter(model.action for model in result.models)
        detail = ", ".join(f"{count} {action}" for action, count in sorted(actions.items()))
        suffix = " (dry run)" if dry_run else ""
        return f"{len(result.models)} model(s)" + (f": {detail}" if detail else "") + suffix, result

    return SetupResult(project=project.name, steps=[_run_step("deps", deps_step), _run_step("models", models_step)])


def _run_after_models(layout: VolumeLayout, project: ProjectDefinition) -> None:
    """The plugin's after_models hook; what it raises fails the models step, never the whole run."""
    if project.plugin is None:
        return
    try:
        project.plugin.after_models(project.hook_context(layout))
    except (Exception, SystemExit) as exc:  # user code: an error line, never a crash or a silent exit
        raise HookError(
            f"{project.name}: the models are present, but the plugin's after_models hook failed: "
            f"{type(exc).__name__}: {exc}",
            hint=f"fix {project.definition_file}, then run: volume-cli setup --project {project.name}",
        ) from exc
