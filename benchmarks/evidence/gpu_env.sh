# Sourced by the GPU scripts: install the wheels the GPU machine lacks (carried in $WHEELS, default .whl/) and put
# them and src/ on PYTHONPATH. Its image (2026-11) has torch, transformers 5.17, peft, accelerate, safetensors and
# huggingface_hub 1.33 but not diffusers or omegaconf. Make .whl/ once, on a machine with pip's index:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     diffusers==0.42.1 importlib_metadata==8.7.0 omegaconf==2.4.0
# (importlib_metadata 8.7 needs only zipp, which the image has; 10.x also needs lazy-importer). Then name .whl in
# the device call's carry.
WHEELS=${WHEELS:-.whl}; PY=${PY:-python3}
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
