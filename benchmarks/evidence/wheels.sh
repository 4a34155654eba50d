#!/usr/bin/env bash
# Make .whl/, the wheels the lent GPU machine lacks (gpu_env.sh installs them there), on this machine, which
# reaches pip's index; the GPU machine reaches nothing. Run it before a device call that carries [".whl"]:
#   bash benchmarks/evidence/wheels.sh && run(command="bash benchmarks/evidence/rehearsal.sh", carry=[".whl"])
# The machine's image (2026-11, Python 3.12) has torch, transformers, peft, accelerate, safetensors and
# huggingface_hub but not diffusers or omegaconf. importlib_metadata 8.7 needs only zipp, which the image has
# (10.x also needs lazy-importer). .whl/ is git-ignored; about 6.6 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl  # only these wheels: a stale one would be installed over the image's own
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  diffusers==0.42.1 importlib_metadata==8.7.0 omegaconf==2.4.0 2> >(grep -v "is ignored: it is neither" >&2)
ls .whl
