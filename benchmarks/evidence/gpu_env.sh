# Sourced by the GPU scripts: install the wheels the GPU machine lacks (carried in $WHEELS, default .whl/) and put
# them and src/ on PYTHONPATH. Its image (2026-11) has torch, transformers 5.17, peft, accelerate, safetensors and
# huggingface_hub 1.33 but not diffusers or omegaconf. Make .whl/ here first (pip's index is reachable from this
# machine, not from the GPU one): `bash benchmarks/evidence/wheels.sh`; then name .whl in the device call's carry.
WHEELS=${WHEELS:-.whl}; PY=${PY:-python3}
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
$PY -c "import diffusers, omegaconf" 2>/dev/null || {
  echo "gpu_env.sh: diffusers or omegaconf is missing here; run 'bash benchmarks/evidence/wheels.sh' on the CPU" \
    "machine and name .whl in the device call's carry" >&2
  exit 2
}
