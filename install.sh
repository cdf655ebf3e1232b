#!/usr/bin/env bash
# Build git-hyperion and put `git-hyperion` on PATH, so that `git hyperion …` works.
# Usage: ./install.sh [--prefix DIR]   (default: cargo's bin dir, ~/.cargo/bin)
set -euo pipefail
cd "$(dirname "$0")"

prefix=""
if [ "${1:-}" = "--prefix" ]; then prefix="${2:?--prefix needs a directory}"; fi

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required but not on PATH" >&2; echo "hint: $2" >&2; exit 2; }; }
need git "install git (e.g. apt-get install git)"
need cargo "install a Rust toolchain (https://rustup.rs)"

if [ -n "$prefix" ]; then
  cargo install --quiet --locked --path . --root "$prefix"
  bindir="$prefix/bin"
else
  cargo install --quiet --locked --path .
  bindir="${CARGO_HOME:-$HOME/.cargo}/bin"
fi

if ! command -v git-hyperion >/dev/null 2>&1 || [ "$(command -v git-hyperion)" != "$bindir/git-hyperion" ]; then
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *)
      # Not on PATH: link it somewhere that is, when we may.
      if [ -w /usr/local/bin ]; then
        ln -sf "$bindir/git-hyperion" /usr/local/bin/git-hyperion
        echo "linked /usr/local/bin/git-hyperion -> $bindir/git-hyperion"
      else
        echo "note: add $bindir to PATH so that \`git hyperion\` finds git-hyperion" >&2
      fi
      ;;
  esac
fi
echo "installed: $("$bindir/git-hyperion" --version)"
echo "try: git hyperion demo"
