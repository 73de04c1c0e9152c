"""A PACS over DICOMweb (dicomweb-client): find a study, bring it into a private folder, send results back."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from ..network import is_loopback

__all__ = ["PacsError", "connect", "find_study", "download_study", "store", "private_folder"]


class PacsError(ValueError):
    """The PACS refused or could not be reached; the message says which server and what to check."""


def connect(url: str, username: str | None = None, password: str | None = None, timeout_s: float = 60):
    """A DICOMweb client of ``url`` (the server's DICOMweb root, e.g. ``https://pacs/dicom-web``).

    Raises:
        PacsError: for a URL that is neither https nor http (plain http with a password only to this machine:
            credentials would travel in clear).
    """
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    parts = urlparse(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise PacsError(f"--url {url}: give the DICOMweb root as https://host[:port]/path")
    if parts.scheme == "http" and username and not is_loopback(parts.hostname):
        raise PacsError(f"--url {url}: a password over plain http would travel in clear; use https")
    session = create_session_from_user_pass(username, password or "") if username else create_session()
    return DICOMwebClient(url=url.rstrip("/"), session=session, timeout=timeout_s)


def _call(url: str, what: str, action):
    import requests

    try:
        return action()
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        hint = " (check --username and the password)" if status in (401, 403) else ""
        raise PacsError(f"{url}: {what} failed with HTTP {status}{hint}") from error
    except requests.RequestException as error:
        raise PacsError(f"{url}: cannot reach the server to {what} ({type(error).__name__}); check --url and that "
                        "the server is running") from error


def find_study(client, study_uid: str) -> dict:
    """The study's QIDO record (patient, date, description).

    Raises:
        PacsError: if the server has no such study.
    """
    found = _call(client.base_url, "search for the study",
                  lambda: client.search_for_studies(search_filters={"StudyInstanceUID": study_uid}))
    if not found:
        raise PacsError(f"{client.base_url}: no study {study_uid} on this server; check --study-uid")
    return found[0]


def download_study(client, study_uid: str, folder: Path) -> int:
    """Write every instance of the study into ``folder`` (one file each); returns how many."""
    folder.mkdir(parents=True, exist_ok=True)

    def fetch() -> int:
        count = 0
        for dataset in client.iter_study(study_uid):  # one instance in memory at a time
            dataset.save_as(folder / f"{count:06d}.dcm", enforce_file_format=True)
            count += 1
        return count

    count = _call(client.base_url, "retrieve the study", fetch)
    if count == 0:
        raise PacsError(f"{client.base_url}: study {study_uid} has no instances to retrieve")
    return count


def store(client, datasets: Sequence) -> list[str]:
    """Store ``datasets`` on the server (STOW-RS); returns their SOP Instance UIDs."""
    _call(client.base_url, "store the results", lambda: client.store_instances(list(datasets)))
    return [str(dataset.SOPInstanceUID) for dataset in datasets]


def private_folder(parent: str | os.PathLike | None = None) -> Path:
    """A new folder only this user can read (patient data)."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="tumorseg-pacs-", dir=parent))  # mkdtemp makes it 0700
