"""``seq2seq push DIR OWNER/NAME``: a model folder onto the Hugging Face Hub (``huggingface_hub``'s
HfApi: create_repo, then upload_folder). The token comes from huggingface_hub's usual places
(``HF_TOKEN``, or what ``hf auth login`` stored)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

from seq2seq import model_folder as mf
from seq2seq.errors import UserError

REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def push(
    folder: Path,
    repo_id: str,
    private: bool = False,
    revision: Optional[str] = None,
    message: Optional[str] = None,
    log: Callable[[str], None] = print,
) -> str:
    """Upload the model folder ``folder`` (checked first: a damaged folder is never published) to the
    model repository ``repo_id``, created when missing; ``revision``: a branch (created from main when
    missing). Returns the pinned reference ``hf://OWNER/NAME@COMMIT``."""
    if not REPO_ID.fullmatch(repo_id):
        raise UserError(f"{repo_id!r} is not a Hub repository name: give OWNER/NAME")
    mf.read(Path(folder))  # format, version and every file's sha256
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            commit_message=message or f"seq2seq push {Path(folder).name}",
            ignore_patterns=[".*", "*.tmp"],
        )
    except HfHubHTTPError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (log in: hf auth login, or set HF_TOKEN)" if "401" in first or "403" in first else ""
        raise UserError(f"could not push to {repo_id}: {first}{hint}") from None
    except (OSError, ValueError) as e:  # no network, no token
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not push to {repo_id}: {first}") from None
    commit = getattr(info, "oid", None) or getattr(info, "commit_url", "").rsplit("/", 1)[-1]
    ref = f"hf://{repo_id}@{commit}" if commit else f"hf://{repo_id}"
    log(
        f"pushed {folder} to https://huggingface.co/{repo_id}"
        + (f" (revision {revision})" if revision else "")
    )
    log(f"load it with: seq2seq translate {ref}")
    return ref
