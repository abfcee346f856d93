# Sourced by scripts/test.sh, scripts/demo.sh and the trainer's scripts (after scripts/setup.sh):
# installs libtorch for the `trainer` crate (tch 0.24 needs PyTorch 2.11.0 exactly) into a
# project-local virtualenv and exports what torch-sys's build script reads. From PyPI only; a
# second run on the same machine finds the venv and does nothing.
#
# Exports: TORCH_VENV, PYTHON_SYS_EXECUTABLE, LIBTORCH_USE_PYTORCH=1, PATH (venv first).

TORCH_VENV=${TORCH_VENV:-$PWD/.venv/torch}
torch_version=2.11.0
torchvision_version=0.26.0   # the torchvision built against torch 2.11 (reference scripts only)

if ! "$TORCH_VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" >/dev/null 2>&1; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "setup-torch: installing torch==$torch_version into $TORCH_VENV (about 5 GB, a few minutes)" >&2
  python3 -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/pip" install -q --disable-pip-version-check \
    "torch==$torch_version" "torchvision==$torchvision_version"
fi

# cudarc loads NCCL by the name libnccl.so; the nvidia-nccl wheel ships only libnccl.so.2. The
# link lives inside our own venv, and the trainer's build.rs puts that folder on the rpath.
torch_site=$("$TORCH_VENV/bin/python" -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
# ProcessGroupNCCL.hpp (the trainer's multi-process CUDA path, trainer/build.rs) includes
# cuda_runtime.h, which needs crt/host_config.h and CCCL's <nv/target>: the wheel's CUDA runtime
# package leaves both to other packages. nvidia-cuda-crt and nvidia-cuda-cccl (headers only) at the
# runtime's version (13.0) supply them.
cuda_include=$torch_site/nvidia/cu13/include
if [ -d "$cuda_include" ] && { [ ! -e "$cuda_include/crt/host_config.h" ] || [ ! -e "$cuda_include/nv/target" ]; }; then
  "$TORCH_VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
    "nvidia-cuda-crt==13.0.88" "nvidia-cuda-cccl==13.0.85"
fi
if [ -e "$torch_site/nvidia/nccl/lib/libnccl.so.2" ] && [ ! -e "$torch_site/nvidia/nccl/lib/libnccl.so" ]; then
  ln -s libnccl.so.2 "$torch_site/nvidia/nccl/lib/libnccl.so"
fi

export TORCH_VENV
export PYTHON_SYS_EXECUTABLE="$TORCH_VENV/bin/python"
export LIBTORCH_USE_PYTORCH=1
export PATH="$TORCH_VENV/bin:$PATH"
