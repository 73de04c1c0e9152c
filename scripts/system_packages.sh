#!/usr/bin/env bash
# Debian packages some tests and features use, installed only when missing (idempotent, quick when done):
#   dicom3tools (dciodvfy validates our DICOM), orthanc + orthanc-dicomweb (a real PACS for the round-trip
#   test), poppler-utils (pdftoppm renders the PDF report), Pango (WeasyPrint writes the PDF report).
# Without them the library works and the tests that need them skip, saying why.
set -euo pipefail
need=()
command -v dciodvfy >/dev/null || need+=(dicom3tools)
[ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
ldconfig -p | grep "libpangoft2-1.0.so.0" >/dev/null || need+=(libpango-1.0-0 libpangoft2-1.0-0)
command -v chromium >/dev/null || need+=(chromium)
ldconfig -p | grep "libEGL.so.1" >/dev/null || need+=(libegl1)
compgen -G "/usr/share/glvnd/egl_vendor.d/*mesa*" >/dev/null || need+=(libegl-mesa0)
compgen -G "/usr/lib/*/dri/swrast_dri.so" >/dev/null || need+=(libgl1-mesa-dri)
fc-list 2>/dev/null | grep -i dejavu >/dev/null || need+=(fonts-dejavu-core)
if ((${#need[@]} == 0)); then
    exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "system_packages: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo=sudo
fi
echo "system_packages: installing ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
