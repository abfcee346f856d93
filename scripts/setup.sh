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
# The C toolchain some crates' build scripts need.
if ! command -v cc >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
