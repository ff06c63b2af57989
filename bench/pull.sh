#!/usr/bin/env bash
# Pull of a ~300 MB, 5-layer image from a local docker-registry (Debian's, on 127.0.0.1):
# time from `pull` to a runnable image for berth (stored, verified, unpacked, recorded),
# `docker pull` (Debian's docker.io, its daemon started here with networking off) and
# `skopeo copy` to an OCI directory (which does not even unpack), median of RUNS, with
# ratios. Each run starts from empty stores; the registry's files are in the page cache
# for every tool alike.
#
#   bash bench/pull.sh   # BENCH_DOCKER=0 skips Docker; BENCH_BUILD=0 uses the built binaries;
#                        # SIZE_MB, RUNS adjust
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-300}
RUNS=${RUNS:-3}
for tool in docker-registry skopeo; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
  fi
done
[ "${BENCH_BUILD:-1}" = 1 ] && cargo build --release --bins -q
BIN=$PWD/target/release
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The registry.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: $reg
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
pids+=($!)
until python3 -c "import urllib.request; urllib.request.urlopen('http://$reg/v2/')" 2>/dev/null; do sleep 0.05; done

start_engine() { # dir -> sets $engine_pid, $host
  "$BIN/berth-engine" --config /dev/null --root "$1/root" --state "$1/state" 2>"$1/log" &
  engine_pid=$!
  pids+=("$engine_pid")
  host="unix://$1/state/engine.sock"
  until "$BIN/berthctl" -H "$host" info >/dev/null 2>&1; do sleep 0.01; done
}

# The image, pushed by berth.
python3 bench/make_image.py "$work/img.tar" --size-mb "$SIZE_MB" --layers 5 --name bench:latest >/dev/null
image=$reg/bench:latest
d=$work/seed; mkdir -p "$d"; start_engine "$d"
"$BIN/berthctl" -H "$host" load -q -i "$work/img.tar" >/dev/null
"$BIN/berthctl" -H "$host" tag bench:latest "$image"
t0=$(now_ms); "$BIN/berthctl" -H "$host" push -q "$image" >/dev/null; t1=$(now_ms)
echo "image: $SIZE_MB MB in 5 gzip layers, $(du -sm "$work/registry/storage" | cut -f1) MB in the registry; berth push took $((t1 - t0)) ms"
kill "$engine_pid"; wait "$engine_pid" || true
rm -rf "$d" "$work/img.tar"

berth=()
for i in $(seq 1 "$RUNS"); do
  d=$work/berth$i; mkdir -p "$d"
  start_engine "$d"
  t0=$(now_ms); "$BIN/berthctl" -H "$host" pull -q "$image" >/dev/null; t1=$(now_ms)
  berth+=($((t1 - t0)))
  kill "$engine_pid"; wait "$engine_pid" || true
  rm -rf "$d"
done
b=$(median "${berth[@]}")
echo "berth pull:  ${b} ms (median of $RUNS: ${berth[*]})"

skopeo_runs=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now_ms)
  skopeo copy -q --src-tls-verify=false "docker://$image" "oci:$work/skopeo$i:bench" >/dev/null
  t1=$(now_ms)
  skopeo_runs+=($((t1 - t0)))
  rm -rf "$work/skopeo$i"
done
s=$(median "${skopeo_runs[@]}")
echo "skopeo copy: ${s} ms (median of $RUNS: ${skopeo_runs[*]})"
awk -v b="$b" -v s="$s" 'BEGIN { printf "berth pull is %.1fx faster than skopeo copy\n", s / b }'

if [ "${BENCH_DOCKER:-1}" = 1 ]; then
  if ! command -v dockerd >/dev/null; then
    echo "installing docker.io for the comparison"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  dr=$work/docker; mkdir -p "$dr"
  dockerd --data-root "$dr/data" --exec-root "$dr/exec" --pidfile "$dr/docker.pid" \
    -H "unix://$dr/docker.sock" --bridge=none --iptables=false --ip-masq=false \
    --insecure-registry "$reg" >"$dr/log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST="unix://$dr/docker.sock"
  until docker info >/dev/null 2>&1; do sleep 0.1; done
  docker_runs=()
  for i in $(seq 1 "$RUNS"); do
      t0=$(now_ms); docker pull -q "$image" >/dev/null; t1=$(now_ms)
    docker_runs+=($((t1 - t0)))
    docker rmi -f "$image" >/dev/null
  done
  dp=$(median "${docker_runs[@]}")
  echo "docker pull: ${dp} ms (median of $RUNS: ${docker_runs[*]})"
  awk -v b="$b" -v d="$dp" 'BEGIN { printf "berth pull is %.1fx faster than docker pull\n", d / b }'
fi
