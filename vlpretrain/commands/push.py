"""``vlpretrain push DIR --repo-id ORG/NAME``: upload an exported folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a model folder (config, safetensors weights, flat remote code, processor, model card) to the Hub",
    )
    parser.add_argument("folder", help="a folder written by `vlpretrain export` (a plain model folder is exported first)")
    parser.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None, help="Hub token (default: the logged-in one or HF_TOKEN)")
    parser.add_argument("--commit-message", default="Upload vlpretrain model")
    parser.set_defaults(func=run)


def is_exported(folder: Path) -> bool:
    """Whether ``folder`` already holds remote code and a model card (an export), not just weights and config."""
    config_path = folder / "config.json"
    if not config_path.exists():
        return False
    auto_map = json.loads(config_path.read_text()).get("auto_map") or {}
    modules = {reference.split(".")[0] for reference in auto_map.values()}
    return bool(modules) and all((folder / f"{module}.py").exists() for module in modules) and (folder / "README.md").exists()


def push_folder(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload vlpretrain model") -> str:
    """Create ``repo_id`` if needed and upload ``folder`` (exported first if it is not an export); return the commit URL."""
    from huggingface_hub import HfApi

    from ..hub.export import export_model

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json; expected a folder written by `vlpretrain export`")
    if "/" not in repo_id:
        raise ValueError(f"--repo-id: expected ORG/NAME, got {repo_id!r}")
    staging = None
    if not is_exported(folder):
        staging = Path(tempfile.mkdtemp(prefix="vlpretrain-push-"))
        folder = export_model(folder, staging / "export", repo_id=repo_id)
    try:
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
        return str(getattr(commit, "commit_url", commit))
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def run(args: argparse.Namespace, extra_args: list[str]) -> int:
    url = push_folder(args.folder, args.repo_id, args.private, args.token, args.commit_message)
    print(f"pushed {args.folder} -> {args.repo_id} ({url})")
    return 0
