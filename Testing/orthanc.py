"""A real Orthanc PACS for tests: started on 127.0.0.1 with a temporary storage folder, DICOMweb and a user,
stopped afterwards. Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class RunningOrthanc:
    url: str  # REST root
    dicomweb: str  # DICOMweb root
    username: str
    password: str

    def session(self):
        import requests

        session = requests.Session()
        session.auth = (self.username, self.password)
        return session

    def upload(self, files) -> int:
        """Upload DICOM files through the REST API; returns how many were stored."""
        session = self.session()
        stored = 0
        for path in files:
            response = session.post(f"{self.url}/instances", data=Path(path).read_bytes(), timeout=30)
            response.raise_for_status()
            stored += 1
        return stored


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or ``None``."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (Debian package orthanc); .ci/run installs it"
    if not DICOMWEB_PLUGIN.exists():
        return "the Orthanc DICOMweb plugin is not installed (Debian package orthanc-dicomweb); .ci/run installs it"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_orthanc(folder: Path, username: str = "tumorseg", password: str = "not-a-real-secret"):
    """An Orthanc serving on a free loopback port until the block ends."""
    import requests

    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = {"Name": "TumorSegTest", "StorageDirectory": str(folder / "storage"),
              "IndexDirectory": str(folder / "storage"), "HttpPort": port, "DicomServerEnabled": False,
              "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {username: password},
              "Plugins": [str(DICOMWEB_PLUGIN)], "HttpTimeout": 60,
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{port}", "Ssl": False}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/system", auth=(username, password), timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start; see {folder / 'orthanc.log'}")
            time.sleep(0.2)
        yield RunningOrthanc(url, f"{url}/dicom-web", username, password)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
