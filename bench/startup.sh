#!/usr/bin/env bash
# Startup time and idle memory of berth-engine with its embedded services, against
# dockerd + containerd when Debian's docker.io is installed (BENCH_DOCKER=0 skips it).
#
#   bash bench/startup.sh            # 10 runs, release build
#
# Prints: median/min/max milliseconds from exec of berth-engine until `berthctl info`
# answers with every service SERVING, and the RSS/PSS of the three idle processes.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
cargo build --release --bins -q
BIN=$PWD/target/release

work=$(mktemp -d /tmp/berth-bench.XXXXXX)
engine_pid=
cleanup() {
  [ -n "$engine_pid" ] && kill "$engine_pid" 2>/dev/null && wait "$engine_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now_ns() { date +%s%N; }
mem_of() { # pid -> "rss_kib pss_kib"
  local rss pss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup")
  echo "$rss $pss"
}

times=()
for i in $(seq 1 "$RUNS"); do
  root=$work/root$i state=$work/state$i
  t0=$(now_ns)
  "$BIN/berth-engine" --root "$root" --state "$state" 2>"$work/log$i" &
  engine_pid=$!
  until "$BIN/berthctl" -H "unix://$state/engine.sock" info --format json 2>/dev/null \
      | grep -q '"Health": "SERVING"'; do
    kill -0 "$engine_pid" 2>/dev/null || { cat "$work/log$i"; exit 1; }
  done
  t1=$(now_ns)
  times+=($(( (t1 - t0) / 1000 )))
  if [ "$i" -lt "$RUNS" ]; then
    kill "$engine_pid"; wait "$engine_pid" || true; engine_pid=
  fi
done

# Memory of the last run, after it has been idle for a moment.
sleep 2
snap=$(cat "$state/snapshotter.pid") build=$(cat "$state/builder.pid")
read -r e_rss e_pss < <(mem_of "$engine_pid")
read -r s_rss s_pss < <(mem_of "$snap")
read -r b_rss b_pss < <(mem_of "$build")
total_rss=$((e_rss + s_rss + b_rss)) total_pss=$((e_pss + s_pss + b_pss))

sorted=($(printf '%s\n' "${times[@]}" | sort -n))
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
echo "berth start -> all SERVING ($RUNS runs): median $(ms "${sorted[$((RUNS / 2))]}") ms," \
  "min $(ms "${sorted[0]}") ms, max $(ms "${sorted[$((RUNS - 1))]}") ms"
printf 'berth idle memory (KiB)   RSS      PSS\n'
printf '  engine               %7d  %7d\n' "$e_rss" "$e_pss"
printf '  snapshotter          %7d  %7d\n' "$s_rss" "$s_pss"
printf '  builder              %7d  %7d\n' "$b_rss" "$b_pss"
printf '  total                %7d  %7d  (%.1f MiB RSS, %.1f MiB PSS)\n' \
  "$total_rss" "$total_pss" "$(awk -v k=$total_rss 'BEGIN{print k/1024}')" \
  "$(awk -v k=$total_pss 'BEGIN{print k/1024}')"
kill "$engine_pid"; wait "$engine_pid" || true; engine_pid=

if [ "${BENCH_DOCKER:-1}" = 1 ] && command -v dockerd >/dev/null && command -v containerd >/dev/null; then
  droot=$work/docker
  mkdir -p "$droot"
  t0=$(now_ns)
  dockerd --data-root "$droot/data" --exec-root "$droot/exec" --pidfile "$droot/docker.pid" \
    -H "unix://$droot/docker.sock" --containerd-namespace berthbench \
    --bridge=none --iptables=false --ip-masq=false >"$droot/log" 2>&1 &
  dpid=$!
  until docker -H "unix://$droot/docker.sock" info >/dev/null 2>&1; do
    kill -0 "$dpid" 2>/dev/null || { tail "$droot/log"; exit 1; }
    sleep 0.01
  done
  t1=$(now_ns)
  sleep 2
  read -r d_rss d_pss < <(mem_of "$dpid")
  cpid=$(pgrep -P "$dpid" containerd || true)
  c_rss=0 c_pss=0
  [ -n "$cpid" ] && read -r c_rss c_pss < <(mem_of "$cpid")
  kill "$dpid"; wait "$dpid" || true
  docker_rss=$((d_rss + c_rss)) docker_pss=$((d_pss + c_pss))
  echo "dockerd+containerd: start -> info $(ms $(( (t1 - t0) / 1000 ))) ms," \
    "idle RSS $((docker_rss / 1024)) MiB, PSS $((docker_pss / 1024)) MiB"
  awk -v b=$total_rss -v d=$docker_rss 'BEGIN { printf "ratio: berth uses %.1f%% of docker'"'"'s idle RSS (%.1fx less)\n", 100*b/d, d/b }'
else
  echo "dockerd not installed: reference figure on these machines is ~124 MiB for dockerd + containerd"
fi
