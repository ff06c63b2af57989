#!/usr/bin/env bash
# berth's whole test suite, as CI runs it (.ci/run calls this). Run as root, from anywhere:
#
#     bash deploy/test.sh
#
# 1. installs the Debian packages the tests use (only the missing ones)
# 2. makes a Python venv with grpcio at target/pyenv for the Python gRPC client test
#    (the tests find it through BERTH_PYTHON)
# 3. cargo fmt --check, cargo clippy -D warnings, cargo build --bins
# 4. cargo nextest run over the whole workspace
#
# Every check runs even when an earlier one failed (so one run shows every problem), except
# that the tests are skipped when the binaries do not build; the exit code is non-zero when
# anything failed. CI=true, when set, is passed through to the
# tests.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

# Debian packages the tests need now or soon: a Python for the gRPC client test, a local
# OCI registry and skopeo for pull/push tests, a static busybox for test images, runc to
# check that berth's bundles run under it, procps for `berthctl top` (the host's ps), and
# the tools for container networking and TLS.
APT_PACKAGES=(python3 python3-venv python3-pip docker-registry skopeo busybox-static
    iptables nftables iproute2 runc procps openssl ca-certificates)
# Python packages for tests/python (one gRPC release line for all three: stubs made by
# grpcio-tools refuse an older grpcio).
PIP_PACKAGES=("grpcio~=1.85.0" "grpcio-tools~=1.85.0" "grpcio-health-checking~=1.85.0")
PYENV="$REPO_ROOT/target/pyenv"

section() { printf '\n========== %s ==========\n' "$*"; }
info() { printf '    %s\n' "$*"; }

FAILED=()
# run NAME CMD...: runs one check, records its failure without stopping the script.
run() {
    local name=$1 rc=0
    shift
    section "$name"
    printf '+ %s\n' "$*"
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '\n!! %s failed (exit code %s)\n' "$name" "$rc"
        FAILED+=("$name")
    fi
    return 0
}

if [ "$(id -u)" -ne 0 ]; then
    echo "error: run the tests as root (they mount, create namespaces and install packages)" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------
section "System packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    info "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    info "done"
else
    info "all present"
fi

# ---------------------------------------------------------------------------------------
section "Rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "error: cargo not found: run deploy/setup.sh first (it installs Rust)" >&2
    exit 1
}
for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || {
            echo "error: cargo $comp is missing and rustup is not there to add it" >&2
            exit 1
        }
        info "adding rustup component $comp"
        rustup component add "$comp"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    info "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
info "$(cargo --version)"
info "$(cargo nextest --version | head -n1)"

# ---------------------------------------------------------------------------------------
section "Python venv ($PYENV)"
# Pick Debian's python3 when there is one: it is the one python3-venv belongs to.
PY_BOOT=python3
[ -x /usr/bin/python3 ] && PY_BOOT=/usr/bin/python3
if [ ! -x "$PYENV/bin/python" ] || ! "$PYENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    info "creating it with $PY_BOOT"
    rm -rf "$PYENV"
    mkdir -p "$(dirname "$PYENV")"
    "$PY_BOOT" -m venv "$PYENV"
fi
# Re-install only when the wanted packages changed (a stamp holds the last list).
STAMP="$PYENV/.berth-requirements"
if [ "$(cat "$STAMP" 2>/dev/null)" != "${PIP_PACKAGES[*]}" ] ||
    ! "$PYENV/bin/python" -c 'import grpc, grpc_tools, grpc_health' >/dev/null 2>&1; then
    info "pip install ${PIP_PACKAGES[*]}"
    "$PYENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
    echo "${PIP_PACKAGES[*]}" >"$STAMP"
fi
export BERTH_PYTHON="$PYENV/bin/python"
info "BERTH_PYTHON=$BERTH_PYTHON ($("$BERTH_PYTHON" -c 'import grpc; print("grpcio", grpc.__version__)'))"
# CI (CI=true under .ci/run) is in the environment already and reaches the tests as it is.
info "CI=${CI:-<unset>}"

# ---------------------------------------------------------------------------------------
section "Disk"
# A fresh clone's debug build and test binaries take about 2 GiB (1.9 GiB measured; 4 GiB
# leaves room). A full disk shows up as a link error deep in cargo's output, so say it
# plainly first. CI builds once: incremental caches would only double the target directory.
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
mkdir -p "$TARGET_DIR"
free_kib=$(df -Pk "$TARGET_DIR" | awk 'NR == 2 { print $4 }')
info "free under $TARGET_DIR: $((free_kib / 1024)) MiB"
if [ "$free_kib" -lt $((4 * 1024 * 1024)) ]; then
    info "warning: less than 4 GiB free; the build may fail with 'No space left on device'"
fi
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
    info "CARGO_INCREMENTAL=0 (CI)"
fi

# ---------------------------------------------------------------------------------------
run "cargo fmt --check" cargo fmt --all -- --check
run "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
run "cargo build --bins" cargo build --workspace --bins
if [[ " ${FAILED[*]} " == *" cargo build --bins "* ]]; then
    section "cargo nextest"
    echo "skipped: the binaries did not build, and the end-to-end tests need them"
    FAILED+=("cargo nextest (skipped)")
else
    run "cargo nextest" cargo nextest run --workspace --no-fail-fast
fi

# ---------------------------------------------------------------------------------------
section "Summary"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all checks passed"
