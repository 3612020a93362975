"""Publishing an output folder to the Hugging Face Hub. The token comes from the environment
(HF_TOKEN or the login cache) and is never written, printed or put in an error message."""

from __future__ import annotations

from pathlib import Path

from .errors import HubError


def push_folder(folder: Path, repo_id: str, *, private: bool, revision: str | None = None,
                endpoint: str | None = None, message: str = "Upload concept-erased checkpoint (vidunlearn)") -> str:
    """create_repo + upload_folder. Returns the commit URL. Raises :class:`HubError`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision, commit_message=message)
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        fix = ("set HF_TOKEN to a token with write access, or run `hf auth login`" if status in (401, 403)
               else "check the repo id and your network; the local output is kept")
        raise HubError(f"upload failed (HTTP {status})", where=repo_id, fix=fix) from None
    except Exception as exc:  # network errors of the HTTP client (httpx, requests): name only, never the text
        raise HubError(f"upload failed ({type(exc).__name__})", where=repo_id,
                       fix="check your network; the local output is kept") from None
    return str(getattr(info, "commit_url", info))
