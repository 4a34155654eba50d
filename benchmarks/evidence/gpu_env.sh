# Sourced by the GPU scripts: install the wheels the GPU machine lacks (diffusers, transformers, omegaconf,
# carried in $WHEELS, default .whl/) and put them and src/ on PYTHONPATH.
WHEELS=${WHEELS:-.whl}; PY=${PY:-python3}
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
