"""Publishing an output folder to the Hugging Face Hub. The token comes from the HF_TOKEN
environment variable only, and is never written, printed or put in an error message."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .errors import HubError


def token_from_environment(repo_id: str) -> str:
    """HF_TOKEN, or a one-line error. Checked before any work so a long apply does not end in it."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token:
        raise HubError("HF_TOKEN is not set", where=repo_id,
                       fix="export HF_TOKEN=<a token with write access> (it is read from the environment only)")
    return token


def check_repo_id(repo_id: str) -> None:
    """A valid Hub repo id (``owner/name``), or a one-line error before any work."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") <= 1
    except HFValidationError:
        valid = False
    if not valid:
        raise HubError("not a valid Hub repo id", where=repo_id,
                       fix="use OWNER/NAME (or NAME, in your own namespace) with letters, digits, '-', '_', '.' (at most 96 characters)")


def redact_url(url: str) -> str:
    """``url`` without the user name and password it may carry (``https://user:pass@host``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def push_folder(folder: Path, repo_id: str, *, private: bool, revision: str | None = None,
                endpoint: str | None = None, message: str = "Upload concept-erased checkpoint (vidunlearn)") -> str:
    """create_repo + upload_folder. Returns the commit URL. Raises :class:`HubError`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(endpoint=endpoint, token=token_from_environment(repo_id))
    try:
        try:
            api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                     commit_message=message)
        except RuntimeError as wrapped:  # LFS uploads wrap the HTTP error: judge by its cause
            if wrapped.__cause__ is None:
                raise
            raise wrapped.__cause__ from None
    except OfflineModeIsEnabled:
        raise HubError("upload refused: HF_HUB_OFFLINE is set", where=repo_id,
                       fix="unset HF_HUB_OFFLINE to upload; the local output is kept") from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        fix = ("set HF_TOKEN to a token with write access, or run `hf auth login`; the local output is kept"
               if status in (401, 403) else "check the repo id and your network; the local output is kept")
        raise HubError(f"upload failed (HTTP {status})", where=repo_id, fix=fix) from None
    except Exception as exc:  # network errors (httpx, timeouts, OSError), malformed replies: the type only, never
        # the text (it can quote request headers); the CLI prints one line whatever went wrong
        kind = "cannot reach" if _is_network_error(exc) or isinstance(exc, OSError) else "unexpected reply from"
        raise HubError(f"upload failed: {kind} {redact_url(api.endpoint)} ({type(exc).__name__})", where=repo_id,
                       fix="check your network or HF_ENDPOINT; the local output is kept") from None
    return str(getattr(info, "commit_url", info))


def _is_network_error(exc: BaseException) -> bool:
    """httpx (or huggingface_hub's vendored httpx2) transport errors: refused, reset, timeouts."""
    return any(cls.__name__ in ("TransportError", "NetworkError", "TimeoutException") for cls in type(exc).__mro__)
