#!/usr/bin/env bash
# Build git-hyperion and put `git-hyperion` on PATH, so that `git hyperion …` works.
# Usage: ./install.sh [--prefix DIR] [--dynamic]
#   --prefix DIR  install into DIR/bin (default: cargo's bin dir, ~/.cargo/bin); nothing
#                 outside DIR is touched
#   --dynamic     link glibc dynamically even where a static link is possible
#
# On Linux with glibc the binary is linked statically (a static PIE: its addresses are still
# randomised) when the C toolchain has glibc's static libraries (Debian's libc6-dev): a
# process then starts about 0.5 ms sooner, and every command pays a start (docs/BENCHMARKS.md,
# "The everyday path"). Only the binary is linked so: the flag goes to its last compile
# (`cargo rustc`), not to the build scripts and proc-macros, which cannot be static.
set -euo pipefail
cd "$(dirname "$0")"

prefix=""
dynamic=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --dynamic) dynamic=1; shift ;;
    -h | --help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1'" >&2; echo "hint: ./install.sh [--prefix DIR] [--dynamic]" >&2; exit 2 ;;
  esac
done

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required but not on PATH" >&2; echo "hint: $2" >&2; exit 2; }; }
need git "install git (e.g. apt-get install git)"
need cargo "install a Rust toolchain (https://rustup.rs)"

host=$(rustc -vV | sed -n 's/^host: //p')
flags=()
linked=dynamic
if [ -z "$dynamic" ]; then
  case "$host" in
    *-linux-gnu)
      if [ -f "$(cc -print-file-name=libc.a 2>/dev/null)" ]; then
        flags=(-C target-feature=+crt-static)
        linked=static
      else
        echo "note: glibc's static libraries are missing (libc6-dev); linking dynamically" >&2
      fi
      ;;
  esac
fi
# (`${flags[@]+…}`: bash 3.2, macOS's, calls an empty array unset.)
# Where cargo put it (CARGO_TARGET_DIR or a configured target-dir move it): its own report.
built=$(cargo rustc --quiet --locked --release --bin git-hyperion --message-format=json-render-diagnostics \
  -- ${flags[@]+"${flags[@]}"} | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$built" ] && [ -x "$built" ] || { echo "error: cargo reported no git-hyperion binary" >&2; exit 2; }

if [ -n "$prefix" ]; then
  bindir="$prefix/bin"
else
  bindir="${CARGO_HOME:-$HOME/.cargo}/bin"
fi
mkdir -p "$bindir"
# A new file renamed over the old one: a running git-hyperion keeps its own.
install -m 755 "$built" "$bindir/.git-hyperion.new"
mv -f "$bindir/.git-hyperion.new" "$bindir/git-hyperion"

if [ -z "$prefix" ] && [ "$(command -v git-hyperion 2>/dev/null)" != "$bindir/git-hyperion" ]; then
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
elif [ -n "$prefix" ]; then
  case ":$PATH:" in
    *":$bindir:"*) ;;
    *) echo "note: add $bindir to PATH so that \`git hyperion\` finds git-hyperion" >&2 ;;
  esac
fi
echo "installed: $("$bindir/git-hyperion" --version) ($linked) in $bindir"
echo "try: git hyperion demo"
