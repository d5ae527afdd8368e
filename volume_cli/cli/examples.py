"""The "Examples:" section of every command's --help, in one place (a test parses each line)."""

from __future__ import annotations

EXAMPLES: dict[str, list[str]] = {
    "": [
        "volume-cli setup -p demo --root ./workspace",
        "volume-cli status",
        "volume-cli completion bash > ~/.local/share/bash-completion/completions/volume-cli",
    ],
    "status": ["volume-cli status", "volume-cli status -p demo --json"],
    "setup": [
        "volume-cli setup -p demo",
        "volume-cli setup -p demo --dry-run",
        "volume-cli setup -p demo --index-url https://pypi.tuna.tsinghua.edu.cn/simple --hf-endpoint https://hf-mirror.com",
    ],
    "gc": ["volume-cli gc --dry-run", "volume-cli gc --grace-hours 0 --drop-previous"],
    "env": [
        'eval "$(volume-cli env -p demo)"',
        "volume-cli env -p demo --mount /runpod-volume --format dockerfile",
        "volume-cli env -p demo --json",
    ],
    "doctor": ["volume-cli doctor -p demo", "volume-cli doctor -p demo --root /runpod-volume --json"],
    "completion": [
        "volume-cli completion bash > ~/.local/share/bash-completion/completions/volume-cli",
        "volume-cli completion zsh > ~/.zfunc/_volume-cli",
        "volume-cli completion fish > ~/.config/fish/completions/volume-cli.fish",
    ],
    "projects": ["volume-cli projects list", "volume-cli projects new my-app --python 3.10"],
    "projects list": ["volume-cli projects list", "volume-cli projects list --projects-dir ./my-projects --json"],
    "projects new": [
        "volume-cli projects new my-app --python 3.10",
        "volume-cli projects new my-app --python 3.11 --projects-dir ./my-projects",
    ],
    "projects check": ["volume-cli projects check", "volume-cli projects check -p demo --json"],
    "projects import": [
        "volume-cli projects import ./old-tool/src/projects/speaker_reg",
        "volume-cli projects import ./my-projects/tts --force",
    ],
    "deps": ["volume-cli deps install -p demo --dry-run", "volume-cli deps rollback -p demo"],
    "deps list": ["volume-cli deps list -p demo", "volume-cli deps list -p demo --json"],
    "deps lock": ["volume-cli deps lock -p demo", "volume-cli deps lock -p demo --upgrade -o pylock.toml"],
    "deps install": [
        "volume-cli deps install -p demo --dry-run",
        "volume-cli deps install -p demo",
        "volume-cli deps install -p demo --force --wait 600",
    ],
    "deps rollback": ["volume-cli deps rollback -p demo --dry-run", "volume-cli deps rollback -p demo"],
    "deps gc": ["volume-cli deps gc --dry-run", "volume-cli deps gc --grace-hours 0 --drop-previous"],
    "deps check": ["volume-cli deps check -p demo", "volume-cli deps check -p demo --no-imports --json"],
    "models": ["volume-cli models download -p demo", "volume-cli models list"],
    "models list": ["volume-cli models list", "volume-cli models list -p demo --json"],
    "models download": [
        "volume-cli models download -p demo",
        "volume-cli models download -p demo --hf-endpoint https://hf-mirror.com --hf-endpoint https://huggingface.co",
        "volume-cli models download -p demo --refresh --dry-run",
    ],
    "models verify": ["volume-cli models verify", "volume-cli models verify -p demo --deep"],
    "models ensure": [
        "volume-cli models ensure -p demo --root /runpod-volume",
        "volume-cli models ensure -p demo --timeout 10 --retries 2 --deadline 600",
    ],
    "models rm": ["volume-cli models rm huggingface/model/org/name --dry-run"],
    "models gc": ["volume-cli models gc --dry-run", "volume-cli models gc"],
    "remote": [
        "volume-cli remote add eu --runpod-volume abc123xyz --datacenter EUR-IS-1",
        "volume-cli remote check eu",
    ],
    "remote add": [
        "volume-cli remote add eu --runpod-volume abc123xyz --datacenter EUR-IS-1",
        "volume-cli remote add lab --endpoint https://s3.example.com --bucket models --region us-east-1",
        "volume-cli remote add ci --endpoint https://s3.example.com --bucket models --profile ci",
    ],
    "remote list": ["volume-cli remote list", "volume-cli remote list --json"],
    "remote rm": ["volume-cli remote rm eu"],
    "remote check": ["volume-cli remote check eu", "volume-cli remote check eu --timeout 30 --json"],
    "sync": ["volume-cli sync push -p demo --to eu,us --dry-run", "volume-cli sync apply -p demo"],
    "sync push": [
        "volume-cli sync push -p demo --to eu,us --dry-run",
        "volume-cli sync push -p demo --to eu,us --root ./build",
    ],
    "sync apply": ["volume-cli sync apply -p demo", "volume-cli sync apply -p demo --deep --wait 600"],
    "sync status": ["volume-cli sync status -p demo --to eu,us", "volume-cli sync status -p demo --to eu --json"],
}


def epilog(path: str) -> str | None:
    """Click rewraps epilog paragraphs; the \\b line keeps one example per line."""
    lines = EXAMPLES.get(path)
    if not lines:
        return None
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)
