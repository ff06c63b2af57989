#!/usr/bin/env bash
# Load and save of a ~300 MB, 5-layer image with berth and with Docker (Debian's docker.io,
# its daemon started here with networking off), the snapshotter's peak memory while
# loading a 1 GiB image, and sha256 throughput.
#
#   bash bench/load_save.sh            # BENCH_DOCKER=0 skips Docker; SIZE_MB, RUNS adjust
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-300}
RUNS=${RUNS:-3}
cargo build --release --bins -q
BIN=$PWD/target/release
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  # Overlay mounts are the engine's to clean; unmount anything left under our dir.
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

python3 bench/make_image.py "$work/img.tar" --size-mb "$SIZE_MB" --layers 5 --name bench:latest >/dev/null
echo "image: $SIZE_MB MB in 5 gzip layers, archive $(du -m "$work/img.tar" | cut -f1) MB"

start_engine() { # dir -> sets $engine_pid, $host
  "$BIN/berth-engine" --config /dev/null --root "$1/root" --state "$1/state" 2>"$1/log" &
  engine_pid=$!
  pids+=("$engine_pid")
  host="unix://$1/state/engine.sock"
  until "$BIN/berthctl" -H "$host" info >/dev/null 2>&1; do sleep 0.01; done
}

berth_load=() berth_save=()
for i in $(seq 1 "$RUNS"); do
  d=$work/berth$i; mkdir -p "$d"
  start_engine "$d"
  t0=$(now_ms); "$BIN/berthctl" -H "$host" load -q -i "$work/img.tar" >/dev/null; t1=$(now_ms)
  "$BIN/berthctl" -H "$host" save -o "$d/out.tar" bench:latest; t2=$(now_ms)
  berth_load+=($((t1 - t0))) berth_save+=($((t2 - t1)))
  kill "$engine_pid"; wait "$engine_pid" || true
  rm -rf "$d"
done
bl=$(median "${berth_load[@]}") bs=$(median "${berth_save[@]}")
echo "berth:  load ${bl} ms, save ${bs} ms (median of $RUNS)"

# Peak memory of the snapshotter while loading a 1 GiB image.
python3 bench/make_image.py "$work/big.tar" --size-mb 1024 --layers 4 --name big:latest >/dev/null
d=$work/big; mkdir -p "$d"; start_engine "$d"
"$BIN/berthctl" -H "$host" load -q -i "$work/big.tar" >/dev/null
snap=$(cat "$d/state/snapshotter.pid")
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$snap/status")
echo "berth:  snapshotter peak RSS while loading a 1 GiB image: $((hwm / 1024)) MiB"
kill "$engine_pid"; wait "$engine_pid" || true
rm -f "$work/big.tar"; rm -rf "$d"

cargo bench -q -p berth-snapshotter --bench digest 2>/dev/null | grep -i 'sha256' || true

if [ "${BENCH_DOCKER:-1}" = 1 ]; then
  if ! command -v dockerd >/dev/null; then
    echo "installing docker.io for the comparison"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  dr=$work/docker; mkdir -p "$dr"
  dockerd --data-root "$dr/data" --exec-root "$dr/exec" --pidfile "$dr/docker.pid" \
    -H "unix://$dr/docker.sock" --bridge=none --iptables=false --ip-masq=false >"$dr/log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST="unix://$dr/docker.sock"
  until docker info >/dev/null 2>&1; do sleep 0.1; done
  docker_load=() docker_save=()
  for i in $(seq 1 "$RUNS"); do
    t0=$(now_ms); docker load -q -i "$work/img.tar" >/dev/null; t1=$(now_ms)
    docker save -o "$dr/out.tar" bench:latest; t2=$(now_ms)
    docker_load+=($((t1 - t0))) docker_save+=($((t2 - t1)))
    docker rmi -f bench:latest >/dev/null
  done
  dl=$(median "${docker_load[@]}") ds=$(median "${docker_save[@]}")
  echo "docker: load ${dl} ms, save ${ds} ms (median of $RUNS)"
  awk -v b="$bl" -v d="$dl" 'BEGIN { printf "load: berth is %.1fx faster than docker\n", d / b }'
  awk -v b="$bs" -v d="$ds" 'BEGIN { printf "save: berth is %.1fx faster than docker\n", d / b }'
fi
