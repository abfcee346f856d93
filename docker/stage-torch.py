#!/usr/bin/env python3
"""Stages the torch wheel's files for the trainer image (docker/trainer.Dockerfile).

Copies (hard-links where it can) a site-packages folder that holds the torch wheel and its
dependencies into DEST, leaving out what neither the trainer nor torchrun ever loads:

- every variant: triton (torch.compile's kernel compiler), torchvision and Pillow (the
  set-up script installs them for the reference scripts), pip and setuptools, the CUDA
  packages' C headers, static libraries and CMake files (build-time only);
- variant "cpu": every shared library of the nvidia-* packages that is not in the dynamic-link
  closure of the entry points below (their ELF DT_NEEDED entries, followed transitively). That
  closure is what the dynamic loader must find for `import torch` (and so torchrun) and for
  shardfeed-train to start, CUDA or not: the CUDA wheel's libtorch links cuBLAS, cuFFT, NCCL and
  the rest. What remains out are the libraries CUDA work alone opens later with dlopen (cuDNN's
  engines, cuSOLVER, NVRTC, the profiler's perf libraries);
- variant "cuda": nothing more: everything a GPU run may open.

The entry points are every shared object under torch/ and functorch/ but the two torch opens
only for CUDA work (libtorch_cuda_linalg.so, libcaffe2_nvrtc.so), plus any --binary given.

Usage: stage-torch.py --variant cpu|cuda SITE_PACKAGES DEST [--binary PATH ...]
Prints what it kept and left out, in bytes.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Left out of every variant: top-level entries of site-packages (prefix match).
NEVER = (
    "triton",
    "torchvision",
    "PIL",
    "pillow",
    "pip",
    "setuptools",
    "_distutils_hack",
    "distutils-precedence.pth",
)
# Shared objects torch loads itself only for CUDA work (dlopen), not entry points.
CUDA_ONLY_ENTRIES = {"libtorch_cuda_linalg.so", "libcaffe2_nvrtc.so"}


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def needed(path: Path) -> list[str]:
    """The DT_NEEDED sonames of an ELF file, read with binutils' readelf."""
    out = subprocess.run(
        ["readelf", "-d", "--wide", str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"stage-torch: readelf failed on {path}: {out.stderr.strip()}")
    names = []
    for line in out.stdout.splitlines():
        if "(NEEDED)" in line and "[" in line:
            names.append(line.split("[", 1)[1].rstrip("]").strip())
    return names


def shared_objects(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.so*") if p.is_file() and not p.is_symlink() and is_elf(p)]


def closure(entries: list[Path], by_name: dict[str, Path]) -> set[Path]:
    """Every library of by_name reachable from entries through DT_NEEDED."""
    seen: set[Path] = set()
    todo = list(entries)
    while todo:
        lib = todo.pop()
        for name in needed(lib):
            dep = by_name.get(name)
            if dep is not None and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["cpu", "cuda"], required=True)
    ap.add_argument("--binary", type=Path, action="append", default=[])
    ap.add_argument("site_packages", type=Path)
    ap.add_argument("dest", type=Path)
    a = ap.parse_args()
    site = a.site_packages.resolve()
    if not (site / "torch" / "__init__.py").is_file():
        print(f"stage-torch: no torch package in {site}", file=sys.stderr)
        return 2

    nvidia_libs = shared_objects(site / "nvidia") if (site / "nvidia").is_dir() else []
    torch_libs = [p for d in ("torch", "functorch") if (site / d).is_dir() for p in shared_objects(site / d)]
    by_name = {p.name: p for p in nvidia_libs + torch_libs}
    # Versioned sonames point at files of another name (libnccl.so.2 is the file itself, but a
    # soname may also be a symlink's name): index the symlinks too.
    for link in (site / "nvidia").rglob("*.so*") if (site / "nvidia").is_dir() else []:
        if link.is_symlink() and link.resolve() in by_name.values():
            by_name.setdefault(link.name, link.resolve())
    entries = [p for p in torch_libs if p.name not in CUDA_ONLY_ENTRIES] + list(a.binary)
    keep_nvidia = closure(entries, by_name) if a.variant == "cpu" else set(nvidia_libs)

    nvidia_set = set(nvidia_libs)
    kept = dropped = 0
    if a.dest.exists():
        shutil.rmtree(a.dest)
    for src in sorted(site.rglob("*")):
        rel = src.relative_to(site)
        top = rel.parts[0]
        if src.is_dir() and not src.is_symlink():
            continue
        leave_out = top.startswith(NEVER) or "__pycache__" in rel.parts
        if top == "nvidia" and not leave_out:
            if "include" in rel.parts or "cmake" in rel.parts or src.suffix in (".a", ".bc"):
                leave_out = True
            elif src.resolve() in nvidia_set and src.resolve() not in keep_nvidia:
                leave_out = True
        size = src.lstat().st_size
        if leave_out:
            dropped += size
            continue
        kept += size
        dst = a.dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    gib = 1 << 30
    print(
        f"stage-torch: {a.variant}: kept {kept / gib:.2f} GiB of {site.name}, "
        f"left out {dropped / gib:.2f} GiB -> {a.dest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
