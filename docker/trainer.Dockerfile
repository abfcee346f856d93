# The shardfeed trainer image: shardfeed-train (the LARS trainer on libtorch) and torchrun, with
# libtorch from the same torch wheel scripts/setup-torch.sh installs (torch==2.11.0 from PyPI).
# Build from the repository root, with BuildKit:
#
#   docker build -f docker/trainer.Dockerfile -t shardfeed-trainer .                 # CPU
#   docker build -f docker/trainer.Dockerfile --build-arg TORCH_VARIANT=cuda \
#       -t shardfeed-trainer:cuda .                                                 # CUDA
#
# TORCH_VARIANT picks the wheel's libraries the image keeps (docker/stage-torch.py): "cpu" keeps
# those the dynamic loader needs to start shardfeed-train and torchrun (the CUDA wheel's libtorch
# links cuBLAS, cuFFT, NCCL, ... even for a CPU run); "cuda" keeps every CUDA library of the wheel
# (cuDNN's engines, cuSOLVER, NVRTC), for `docker run --gpus all` on a host with the NVIDIA
# container toolkit, which brings the driver. Where no registry can be reached,
# docker/build-images.sh builds the binary on the host, stages the host's torch, and passes
# BINARIES=host (see docker/README.md).

ARG RUST_VERSION=1.95.0
ARG BINARIES=source
ARG TORCH_VARIANT=cpu

# ---- binaries-source: the trainer compiled against the torch wheel ---------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS binaries-source
ARG TORCH_VARIANT
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake nasm binutils python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# scripts/setup-torch.sh: the same wheel, venv and build settings as on a developer's machine.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    TORCH_VENV=/opt/torch-venv bash -c 'set -e; source scripts/setup-torch.sh \
      && cargo build --release --locked -p shardfeed-trainer \
      && install -D -s -m 0755 target/release/shardfeed-train /out/bin/shardfeed-train \
      && python3 docker/stage-torch.py --variant "$TORCH_VARIANT" --binary /out/bin/shardfeed-train \
           "$(ls -d /opt/torch-venv/lib/python3*/site-packages)" /out/torch'

# ---- runtime-base: Debian, Python for torchrun, the user --------------------------------------
FROM debian:bookworm-slim AS runtime-base
ARG TORCH_VARIANT
LABEL org.opencontainers.image.title="shardfeed-trainer" \
      org.opencontainers.image.description="The shardfeed LARS trainer on libtorch, with torchrun" \
      org.opencontainers.image.licenses="Apache-2.0"
# Debian's Python 3.11: the wheel is built for CPython 3.11 (torchrun is Python).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/*
# The same unprivileged uid as the pipeline image, so both read the same volumes. /ckpt, /logs,
# /data and /secrets exist with its ownership, so named volumes mounted there are writable by it.
RUN useradd --system --uid 10001 --home-dir /work --shell /usr/sbin/nologin shardfeed \
    && mkdir -p /work /ckpt /logs /data /secrets && chown shardfeed /work /ckpt /logs /data /secrets \
    && chmod 0700 /secrets
COPY docker/torchrun /usr/local/bin/torchrun
# torch's own libraries find the nvidia-* ones by their RUNPATH; the trainer (linked on another
# host) finds torch's here, and cudarc's NCCL by name in the nccl folder.
ENV PYTHONPATH=/opt/torch \
    LD_LIBRARY_PATH=/opt/torch/torch/lib:/opt/torch/nvidia/nccl/lib \
    SHARDFEED_TORCH_VARIANT=${TORCH_VARIANT}

# ---- runtime-host: what docker/build-images.sh staged on the host -----------------------------
# Copied from the build context straight into the image: an intermediate stage would copy the
# 3 GB a second time.
FROM runtime-base AS runtime-host
COPY docker/stage/trainer/torch /opt/torch
COPY docker/stage/trainer/bin/ /usr/local/bin/

# ---- runtime-source: what binaries-source built -----------------------------------------------
FROM runtime-base AS runtime-source
COPY --from=binaries-source /out/torch /opt/torch
COPY --from=binaries-source /out/bin/ /usr/local/bin/

# ---- the image ------------------------------------------------------------------------------------
FROM runtime-${BINARIES}
# Both must start: every library the loader needs is there.
RUN shardfeed-train --help >/dev/null && python3 -c "import torch.distributed.run"
USER 10001:10001
WORKDIR /work
CMD ["shardfeed-train", "--help"]
