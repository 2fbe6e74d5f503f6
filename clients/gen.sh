#!/usr/bin/env bash
# Generates the Python and Go client stubs from proto/ (the Rust stubs come from build.rs).
#
#   bash clients/gen.sh          regenerate into clients/python/src/switchboard/v1 and clients/go/switchboard/v1
#   bash clients/gen.sh --check  generate into a temp dir and fail if that differs from the committed code
#
# Tools (installed by scripts/install-clients.sh, all pinned there): protoc is grpcio-tools'
# (`python -m grpc_tools.protoc`, which also provides the well-known types such as timestamp.proto),
# protoc-gen-go is built from Debian's golang-google-protobuf-dev, protoc-gen-go-grpc is Debian's.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
PY="$TOOLS/pyvenv/bin/python"
GO_BIN="$TOOLS/go/bin"
GO_MODULE="github.com/switchboard-dev/switchboard/clients/go"
GO_PACKAGE="$GO_MODULE/switchboard/v1;switchboardv1"

PY_OUT_REL="clients/python/src/switchboard/v1"
GO_OUT_REL="clients/go/switchboard/v1"

log() { printf 'gen: %s\n' "$*"; }

check=false
case "${1:-}" in
    "") ;;
    --check) check=true ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

for tool in "$PY" "$GO_BIN/protoc-gen-go" /usr/bin/protoc-gen-go-grpc; do
    if [[ ! -x "$tool" ]]; then
        echo "gen: $tool is missing: run 'bash scripts/install-clients.sh' (or 'make clients-tools')" >&2
        exit 1
    fi
done

cd "$ROOT/proto"
mapfile -t PROTOS < <(find switchboard -name '*.proto' | LC_ALL=C sort)

# Generates both languages under $1 (same layout as the repository).
generate() {
    local out="$1"
    local py_out="$out/$PY_OUT_REL" go_out="$out/clients/go"
    mkdir -p "$out/clients/python/src" "$go_out"

    # Python: messages, .pyi type stubs, gRPC stubs. The imports it writes are `from switchboard.v1
    # import ...`, so the package root is clients/python/src.
    "$PY" -m grpc_tools.protoc -I. \
        --python_out="$out/clients/python/src" \
        --pyi_out="$out/clients/python/src" \
        --grpc_python_out="$out/clients/python/src" \
        "${PROTOS[@]}"
    # (types.proto has no service; grpc_python still writes an empty types_pb2_grpc.py, kept as is.)
    cat >"$py_out/__init__.py" <<'EOF'
"""Generated from proto/switchboard/v1 by clients/gen.sh (grpcio-tools). Do not edit."""
EOF

    # Go: the protos carry no go_package option (they are language-neutral), so the import path is
    # given per file with M flags; module= strips the module prefix so files land in $go_out.
    local go_args=() f
    for f in "${PROTOS[@]}"; do
        go_args+=("--go_opt=M$f=$GO_PACKAGE" "--go-grpc_opt=M$f=$GO_PACKAGE")
    done
    PATH="$GO_BIN:$PATH" "$PY" -m grpc_tools.protoc -I. \
        --plugin=protoc-gen-go="$GO_BIN/protoc-gen-go" \
        --plugin=protoc-gen-go-grpc=/usr/bin/protoc-gen-go-grpc \
        --go_out="$go_out" --go_opt=module="$GO_MODULE" \
        --go-grpc_out="$go_out" --go-grpc_opt=module="$GO_MODULE" \
        "${go_args[@]}" \
        "${PROTOS[@]}"
}

if $check; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    generate "$tmp"
    status=0
    for rel in "$PY_OUT_REL" "$GO_OUT_REL"; do
        if ! diff -r "$tmp/$rel" "$ROOT/$rel" >"$tmp/diff.txt" 2>&1; then
            echo "gen: $rel is not what 'make gen' produces from proto/ (run 'make gen' and commit):" >&2
            head -n 40 "$tmp/diff.txt" >&2
            status=1
        fi
    done
    if [[ $status -eq 0 ]]; then
        log "generated code is up to date ($PY_OUT_REL, $GO_OUT_REL)"
    fi
    exit $status
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"
for rel in "$PY_OUT_REL" "$GO_OUT_REL"; do
    rm -rf "${ROOT:?}/$rel"
    mkdir -p "$(dirname "$ROOT/$rel")"
    cp -r "$tmp/$rel" "$ROOT/$rel"
    log "wrote $rel ($(find "$ROOT/$rel" -type f | wc -l) files)"
done
