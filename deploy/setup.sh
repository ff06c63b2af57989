#!/usr/bin/env bash
# berth quickstart: build berth from this checkout, install it, start the engine, and show
# `berthctl info`. For a fresh Debian 12 machine, run as root from anywhere:
#
#     bash deploy/setup.sh
#
# Safe to run again: it rebuilds, reinstalls, and restarts the engine only when one of the
# daemon binaries changed.
#
# What it does:
#   1. apt-get installs the build tools that are missing (gcc, pkg-config, curl, git, ...)
#   2. installs Rust with rustup, only when `cargo` is not found
#   3. cargo build --release --bins
#   4. installs berth-engine, berth-snapshotter, berth-builder, berthctl (and berth-shim)
#      to /usr/local/bin
#   5. starts berth-engine in the background (it starts the snapshotter and builder itself),
#      logging to /var/log/berth-engine.log, and waits until `berthctl info` answers
#   6. imports a first image, busybox:latest, from Debian's busybox-static, lists it, and
#      runs a first container from it
#
# Environment: PREFIX (default /usr/local), BERTH_LOG (default /var/log/berth-engine.log).
set -euo pipefail

PREFIX=${PREFIX:-/usr/local}
BIN_DIR="$PREFIX/bin"
STATE_DIR=/run/berth
LOG_FILE=${BERTH_LOG:-/var/log/berth-engine.log}
PID_FILE="$STATE_DIR/engine.pid"
BINARIES=(berth-engine berth-snapshotter berth-builder berthctl)
# Installed too when the build makes them: the per-container shim the engine starts from
# beside its own executable. (Running shims keep their old binary; new ones get the new.)
OPTIONAL_BINARIES=(berth-shim)
# The binaries the running engine executes; a change in any of them restarts it.
DAEMONS=(berth-engine berth-snapshotter berth-builder)
START_TIMEOUT=30
STOP_TIMEOUT=30
APT_PACKAGES=(build-essential gcc pkg-config curl ca-certificates git busybox-static)

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run this as root (it installs packages and runs the engine): sudo bash $0"
[ -f "$REPO_ROOT/Cargo.toml" ] || die "no Cargo.toml in $REPO_ROOT: run this script from a berth checkout"

# ---------------------------------------------------------------------------------------
step "System packages"
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
else
    info "all present: ${APT_PACKAGES[*]}"
fi

# ---------------------------------------------------------------------------------------
step "Rust toolchain"
# A rustup install from an earlier run is not on PATH in a new shell yet.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    info "cargo not found: installing Rust with rustup (stable, into $HOME/.cargo)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile default --default-toolchain stable --no-modify-path
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
info "$(cargo --version), $(rustc --version)"
# The workspace's minimum Rust version (rust-version in Cargo.toml).
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$REPO_ROOT/Cargo.toml" | head -n1)
have=$(rustc --version | awk '{print $2}' | cut -d- -f1)
if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    if command -v rustup >/dev/null 2>&1; then
        info "rustc $have is older than the $need berth needs: rustup update stable"
        rustup update stable
    else
        die "rustc $have is older than the $need berth needs (Debian's own rustc is too old).
Remove it (apt-get remove cargo rustc) and run this script again to get Rust from rustup."
    fi
fi

# ---------------------------------------------------------------------------------------
step "Building berth (cargo build --release --bins)"
cd "$REPO_ROOT"
cargo build --release --bins
for b in "${BINARIES[@]}"; do
    [ -x "target/release/$b" ] || die "the build did not produce target/release/$b"
done
for b in "${OPTIONAL_BINARIES[@]}"; do
    if [ -x "target/release/$b" ]; then BINARIES+=("$b"); fi
done

# ---------------------------------------------------------------------------------------
# The running engine, if any: the pid recorded in its pid file (which it holds locked while
# it runs), when that process is alive and really is berth-engine.
engine_pid() {
    local pid
    [ -r "$PID_FILE" ] || return 1
    pid=$(tr -dc '0-9' <"$PID_FILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        */berth-engine | */berth-engine" (deleted)") echo "$pid" ;;
        *) return 1 ;;
    esac
}

under_systemd() {
    command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet berth-engine.service 2>/dev/null
}

stop_engine() {
    local pid=$1 waited=0
    info "stopping berth-engine (pid $pid) with SIGTERM"
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge $((STOP_TIMEOUT * 10)) ]; then
            info "still running after ${STOP_TIMEOUT}s: sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

start_engine() {
    local pid
    mkdir -p "$(dirname "$LOG_FILE")"
    printf '\n=== %s: berth setup.sh starting %s/berth-engine\n' "$(date -Is)" "$BIN_DIR" >>"$LOG_FILE"
    # setsid: its own session, so closing this terminal or Ctrl-C here does not reach it.
    # (In a non-interactive shell the background child is no group leader, so setsid
    # execs in place and $! is the engine's own pid.)
    nohup setsid "$BIN_DIR/berth-engine" </dev/null >>"$LOG_FILE" 2>&1 &
    pid=$!
    STARTED_PID=$pid
    echo "=== berth-engine pid $pid" >>"$LOG_FILE"
    info "started berth-engine (pid $pid), log: $LOG_FILE"
}

# ---------------------------------------------------------------------------------------
step "Installing to $BIN_DIR"
changed=()
for b in "${DAEMONS[@]}"; do
    if ! cmp -s "target/release/$b" "$BIN_DIR/$b"; then
        changed+=("$b")
    fi
done

running_pid=""
STARTED_PID=""
if under_systemd; then
    info "berth-engine is run by systemd (berth-engine.service)"
elif running_pid=$(engine_pid); then
    info "berth-engine is running (pid $running_pid)"
fi

# Stop a running engine before replacing the binaries it (and its services) execute.
restart=no
if [ ${#changed[@]} -gt 0 ] && { [ -n "$running_pid" ] || under_systemd; }; then
    info "changed since the running engine was installed: ${changed[*]}"
    restart=yes
    if [ -n "$running_pid" ]; then
        stop_engine "$running_pid"
        running_pid=""
    fi
fi

mkdir -p "$BIN_DIR"
for b in "${BINARIES[@]}"; do
    if cmp -s "target/release/$b" "$BIN_DIR/$b"; then
        info "up to date: $BIN_DIR/$b"
    else
        install -m 0755 "target/release/$b" "$BIN_DIR/$b"
        info "installed $BIN_DIR/$b"
    fi
done

# ---------------------------------------------------------------------------------------
step "Starting berth-engine"
if under_systemd; then
    if [ "$restart" = yes ]; then
        info "systemctl restart berth-engine.service"
        systemctl restart berth-engine.service
    else
        info "already running under systemd, binaries unchanged: leaving it as it is"
    fi
    LOG_HINT="journalctl -u berth-engine -u berth-snapshotter -u berth-builder"
else
    LOG_HINT="$LOG_FILE"
    if [ -n "$running_pid" ]; then
        info "already running (pid $running_pid), binaries unchanged: leaving it as it is"
    else
        start_engine
    fi
fi

# ---------------------------------------------------------------------------------------
step "Waiting for the engine to answer (up to ${START_TIMEOUT}s)"
deadline=$((SECONDS + START_TIMEOUT))
until "$BIN_DIR/berthctl" info >/dev/null 2>&1; do
    failure=""
    if [ -n "$STARTED_PID" ] && ! kill -0 "$STARTED_PID" 2>/dev/null; then
        failure="berth-engine (pid $STARTED_PID) exited during startup."
    elif [ "$SECONDS" -ge "$deadline" ]; then
        failure="berth-engine did not answer \`berthctl info\` within ${START_TIMEOUT}s."
    fi
    if [ -n "$failure" ]; then
        printf '\nerror: %s\n' "$failure" >&2
        "$BIN_DIR/berthctl" info >&2 || true
        if [ -f "$LOG_FILE" ] && ! under_systemd; then
            printf '\nLast lines of %s:\n' "$LOG_FILE" >&2
            tail -n 40 "$LOG_FILE" >&2
        else
            printf '\nSee: %s\n' "$LOG_HINT" >&2
        fi
        exit 1
    fi
    sleep 0.5
done

step "berthctl info"
"$BIN_DIR/berthctl" info

# A first image, made here from Debian's busybox-static (no registry needed): a root
# filesystem imported as busybox:latest. Kept when it exists already.
step "A first image: busybox:latest from Debian's busybox-static"
if ! "$BIN_DIR/berthctl" image inspect busybox:latest >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in sh ls cat echo ps mount uname id hostname sleep; do
        ln -s busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
    echo 'root:x:0:' >"$rootfs/etc/group"
    tar -C "$rootfs" -c . | "$BIN_DIR/berthctl" import --change 'CMD ["/bin/sh"]' \
        --message "busybox-static from Debian" - busybox:latest
fi
"$BIN_DIR/berthctl" images

# And a first container: its own pid, mount, uts, ipc, cgroup and network namespaces, an
# overlayfs root on the image, removed again when it exits.
step "berthctl run --rm busybox"
"$BIN_DIR/berthctl" run --rm busybox:latest \
    sh -c 'echo "hello from a berth container: pid $$ on $(hostname), $(id)"'

printf '\nberth is running. Logs: %s\n' "$LOG_HINT"
printf 'Stop it with: kill -TERM "$(cat %s)"\n' "$PID_FILE"
