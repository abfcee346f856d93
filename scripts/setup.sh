# Sourced by the other scripts: checks and installs what building shardfeed needs on a fresh
# machine of the project's kind (Debian, Rust toolchain by rustup, Python 3).
# Everything is installed from the package registries; nothing is downloaded at run time.

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: no Rust toolchain (cargo) found; install one with rustup first" >&2
    exit 1
  fi
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
# The C toolchain some crates' build scripts need, and what libjpeg-turbo's vendored build
# (turbojpeg-sys) needs: cmake, and nasm for its SIMD kernels (the build fails without them
# rather than silently building a slow decoder).
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
