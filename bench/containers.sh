#!/usr/bin/env bash
# Containers: berth against Docker (Debian's docker.io, its own daemon started here with
# networking off), containerd's ctr, and bare runc and crun, all on the same busybox image
# (made from Debian's busybox-static). Measures, in one run:
#   - median time of `run --rm busybox true` (no network),
#   - memory of each per-container monitor (PSS and USS from /proc/PID/smaps_rollup) with
#     20 idle containers: berth-shim, containerd-shim-runc-v2, conmon (driving runc),
#   - median time of `berthctl ps` with 200 running containers.
#
#   bash bench/containers.sh
#
# Environment: RUNS (timed runs per tool, default 20), IDLE (idle containers for the memory
# figures, default 20), PS_CONTAINERS (running containers for `ps`, default 200, at most
# 200), PS_RUNS (default 20); BENCH_DOCKER=0, BENCH_CONTAINERD=0, BENCH_CONMON=0,
# BENCH_RUNC=0, BENCH_CRUN=0 skip a comparison; BENCH_PS=0 skips the `ps` figure;
# SHIM_SMAPS=FILE saves /proc/PID/smaps of one idle berth-shim (to see where its memory goes).
#
# Everything started here is stopped by pid, every mount under the temporary directory is
# undone, and every cgroup made here is removed, also when the bench fails half-way.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
IDLE=${IDLE:-20}
PS_CONTAINERS=${PS_CONTAINERS:-200}
PS_RUNS=${PS_RUNS:-20}
[ "$PS_CONTAINERS" -le 200 ] || PS_CONTAINERS=200
[ "$PS_CONTAINERS" -ge "$IDLE" ] || PS_CONTAINERS=$IDLE
on() { [ "${!1:-1}" = 1 ]; }

[ "$(id -u)" -eq 0 ] || { echo "run this as root (it runs containers)" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------
want=(busybox-static)
on BENCH_DOCKER && want+=(docker.io)
on BENCH_CRUN && want+=(crun)
on BENCH_CONMON && want+=(conmon)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if on BENCH_CONTAINERD && ! command -v containerd-shim-runc-v2 >/dev/null; then
  echo "containerd is not installed: skipping it"; BENCH_CONTAINERD=0
fi
if { on BENCH_RUNC || on BENCH_CONMON; } && ! command -v runc >/dev/null; then
  echo "runc is not installed: skipping runc and conmon"; BENCH_RUNC=0 BENCH_CONMON=0
fi
RUNC=$(command -v runc || true)

cargo build --release --bins -q
BIN=$PWD/target/release

# --- cleanup ---------------------------------------------------------------------------
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
tag=berth-bench-${work##*.}
# Every cgroup this bench makes outside berth's lives under /$tag in every hierarchy.
CG=/$tag
pids=()          # daemons we started, stopped in reverse order
engine_pid=
engine_children=() # the snapshotter and builder the engine started
ctr_addr=
conmon_ids=()
berth_cg_existed=$([ -d /sys/fs/cgroup/memory/berth ] && echo 1 || echo 0)

stop_pid() { # pid: SIGTERM, then SIGKILL after 10 s
  local p=$1 n=0
  kill "$p" 2>/dev/null || return 0
  while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

stop_exe() { # pid name: stop_pid, only if that pid still runs the executable `name`
  case "$(readlink "/proc/$1/exe" 2>/dev/null)" in
    */"$2" | */"$2 (deleted)") stop_pid "$1" ;;
  esac
}

rm_cgroup_tree() { # path under each hierarchy, removed depth first
  local h
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$h$1" ] || continue
    find "$h$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

cleanup() {
  set +e
  trap - EXIT INT TERM
  # berth: remove the containers (their shims outlive the engine by design), then the engine.
  if [ -n "$engine_pid" ] && kill -0 "$engine_pid" 2>/dev/null; then
    mapfile -t ids < <(berthctl ps -aq --no-trunc 2>/dev/null)
    [ ${#ids[@]} -gt 0 ] && printf '%s\n' "${ids[@]}" | xargs -r -n 50 "$BIN/berthctl" -H "$bhost" rm -f >/dev/null 2>&1
  fi
  [ -n "$engine_pid" ] && stop_pid "$engine_pid"
  for p in "${engine_children[@]}"; do stop_pid "$p"; done
  # Any shim left (the engine failed): stop it by the pid in its pid file.
  for f in "$work"/berth/state/containers/*/shim.pid; do
    [ -f "$f" ] && stop_exe "$(tr -dc 0-9 <"$f")" berth-shim
  done
  # containerd: kill and delete the tasks, so their shims exit.
  if [ -n "$ctr_addr" ]; then
    for id in $(ctr -a "$ctr_addr" -n bench tasks ls -q 2>/dev/null); do
      ctr -a "$ctr_addr" -n bench tasks kill -s KILL "$id" >/dev/null 2>&1
    done
    sleep 0.5
    for id in $(ctr -a "$ctr_addr" -n bench containers ls -q 2>/dev/null); do
      ctr -a "$ctr_addr" -n bench tasks rm -f "$id" >/dev/null 2>&1
      ctr -a "$ctr_addr" -n bench containers rm "$id" >/dev/null 2>&1
    done
  fi
  # conmon: kill the containers through runc; each conmon exits with its container.
  for id in "${conmon_ids[@]}"; do
    "$RUNC" --root "$work/conmon/runc" kill "$id" KILL >/dev/null 2>&1
  done
  for f in "$work"/conmon/*/conmon.pid; do
    [ -f "$f" ] && stop_exe "$(tr -dc 0-9 <"$f")" conmon
  done
  for id in "${conmon_ids[@]}"; do
    "$RUNC" --root "$work/conmon/runc" delete -f "$id" >/dev/null 2>&1
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm_cgroup_tree "$CG"
  # berth's containers' cgroups are /berth/<id>; the parent goes only if this bench made it.
  for id in "${berth_ids[@]}"; do rm_cgroup_tree "berth/$id"; done
  [ "$berth_cg_existed" = 0 ] && for h in /sys/fs/cgroup/*/berth; do rmdir "$h" 2>/dev/null; done
  rm -rf "$work"
}
berth_ids=()
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ---------------------------------------------------------------------------
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
time_runs() { # n cmd... -> median microseconds of n runs (after one warm-up)
  local n=$1 t0 t1 i; shift
  local times=()
  "$@" >/dev/null
  for ((i = 0; i < n; i++)); do
    t0=$(now_us); "$@" >/dev/null; t1=$(now_us)
    times+=($((t1 - t0)))
  done
  median "${times[@]}"
}
mem_of() { # pid -> "pss_kib uss_kib rss_kib"
  awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {u+=$2}
       END {print p, u, r}' "/proc/$1/smaps_rollup"
}
mem_of_all() { # pids... -> "mean_pss mean_uss mean_rss" in KiB
  local p
  for p in "$@"; do mem_of "$p"; done |
    awk '{p+=$1; u+=$2; r+=$3; n++} END {printf "%d %d %d\n", p/n, u/n, r/n}'
}
wait_until() { # seconds cmd... : polls every 0.1 s
  local n=$(($1 * 10)); shift
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.1
  done
}

declare -A run_us mem
order=()

# --- the image -------------------------------------------------------------------------
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh ls cat echo ps mount uname id hostname sleep true; do
  ln -s busybox "$rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
tar -C "$rootfs" -cf "$work/rootfs.tar" .

# --- berth -----------------------------------------------------------------------------
mkdir -p "$work/berth"
"$BIN/berth-engine" --config /dev/null --root "$work/berth/root" --state "$work/berth/state" \
  2>"$work/berth/engine.log" &
engine_pid=$!
bhost=unix://$work/berth/state/engine.sock
berthctl() { "$BIN/berthctl" -H "$bhost" "$@"; }
wait_until 30 berthctl info || { tail "$work/berth/engine.log"; exit 1; }
for f in snapshotter builder; do
  if [ -f "$work/berth/state/$f.pid" ]; then
    engine_children+=("$(tr -dc 0-9 <"$work/berth/state/$f.pid")")
  fi
done
berthctl import --change 'CMD ["/bin/sh"]' "$work/rootfs.tar" busybox:latest >/dev/null
# The same image for Docker and containerd (berth saves both archive layouts in one tar).
berthctl save -o "$work/busybox.tar" busybox:latest

run_us[berth]=$(time_runs "$RUNS" berthctl run --rm busybox true)
order+=(berth)
echo "berth run --rm: $(ms "${run_us[berth]}") ms"

start_berth_idle() { # n: detached `sleep 1d` containers
  local i id
  for ((i = 0; i < $1; i++)); do
    id=$(berthctl run -d busybox sleep 1d)
    berth_ids+=("$id")
  done
}
start_berth_idle "$IDLE"
sleep 2
shims=()
for id in "${berth_ids[@]}"; do shims+=("$(tr -dc 0-9 <"$work/berth/state/containers/$id/shim.pid")"); done
mem[berth-shim]=$(mem_of_all "${shims[@]}")
echo "berth-shim: PSS/USS/RSS KiB ${mem[berth-shim]}"
if [ -n "${SHIM_SMAPS:-}" ]; then cat "/proc/${shims[0]}/smaps" >"$SHIM_SMAPS"; fi

ps_us=
if on BENCH_PS; then
  start_berth_idle $((PS_CONTAINERS - IDLE))
  running=$(berthctl ps -q | wc -l)
  [ "$running" -eq "$PS_CONTAINERS" ] || { echo "expected $PS_CONTAINERS running, ps shows $running" >&2; exit 1; }
  ps_us=$(time_runs "$PS_RUNS" berthctl ps)
  echo "berthctl ps with $PS_CONTAINERS running: $(ms "$ps_us") ms"
fi
printf '%s\n' "${berth_ids[@]}" | xargs -r -n 50 "$BIN/berthctl" -H "$bhost" rm -f >/dev/null
stop_pid "$engine_pid"; engine_pid=
for p in "${engine_children[@]}"; do stop_pid "$p"; done
engine_children=()

# --- a bare OCI bundle for runc, crun and conmon ---------------------------------------
make_bundle() { # dir id args-json
  mkdir -p "$1"
  (cd "$1" && if [ -n "$RUNC" ]; then "$RUNC" spec; else crun spec; fi)
  python3 - "$1/config.json" "$rootfs" "$CG/$2" "$3" <<'EOF'
import json, sys
path, rootfs, cgroup, args = sys.argv[1:5]
with open(path) as f:
    spec = json.load(f)
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["terminal"] = False
spec["process"]["args"] = json.loads(args)
spec["linux"]["cgroupsPath"] = cgroup
with open(path, "w") as f:
    json.dump(spec, f)
EOF
}

if on BENCH_RUNC; then
  make_bundle "$work/runc/bundle" runc '["true"]'
  run_us[runc]=$(time_runs "$RUNS" "$RUNC" --root "$work/runc/state" run -b "$work/runc/bundle" bench)
  order+=(runc)
  echo "runc run: $(ms "${run_us[runc]}") ms"
fi

if on BENCH_CRUN; then
  # crun 1.8 refuses the hybrid layout (v1 controllers with a v2 tree at unified/): run it
  # in a mount namespace of its own without that mount. The timing loop runs in there
  # too, so unshare is not counted.
  make_bundle "$work/crun/bundle" crun '["true"]'
  run_us[crun]=$(unshare -m bash -c '
    set -e
    mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified
    crun --root "$1/state" run -b "$1/bundle" bench >/dev/null
    times=()
    for ((i = 0; i < $2; i++)); do
      t0=$EPOCHREALTIME; crun --root "$1/state" run -b "$1/bundle" bench >/dev/null; t1=$EPOCHREALTIME
      times+=($(( ${t1/./} - ${t0/./} )))
    done
    printf "%s\n" "${times[@]}" | sort -n | awk "{a[NR]=\$1} END {print a[int((NR+1)/2)]}"
  ' bash "$work/crun" "$RUNS")
  order+=(crun)
  echo "crun run: $(ms "${run_us[crun]}") ms"
fi

if on BENCH_CONMON; then
  # conmon driving runc, as podman does: conmon runs `runc create` and stays as the
  # container's monitor; `runc start` then starts it.
  mkdir -p "$work/conmon/exits"
  for ((i = 0; i < IDLE; i++)); do
    id=conmon-$i
    d=$work/conmon/$id
    make_bundle "$d" "$id" '["sleep", "1d"]'
    conmon --api-version 1 --cid "$id" --cuuid "$(cat /proc/sys/kernel/random/uuid)" --name "$id" \
      --runtime "$RUNC" --runtime-arg "--root=$work/conmon/runc" --bundle "$d" \
      --exit-dir "$work/conmon/exits" --persist-dir "$d" --socket-dir-path "$work/conmon" \
      --container-pidfile "$d/container.pid" --conmon-pidfile "$d/conmon.pid" \
      --log-path "k8s-file:$d/ctr.log" --log-level error
    conmon_ids+=("$id")
    # conmon returns at once; `runc create`, which it runs, writes the container's pid.
    wait_until 10 test -s "$d/container.pid" || { echo "conmon did not create $id" >&2; exit 1; }
    "$RUNC" --root "$work/conmon/runc" start "$id"
  done
  sleep 2
  cpids=()
  for id in "${conmon_ids[@]}"; do cpids+=("$(tr -dc 0-9 <"$work/conmon/$id/conmon.pid")"); done
  mem[conmon]=$(mem_of_all "${cpids[@]}")
  echo "conmon: PSS/USS/RSS KiB ${mem[conmon]}"
  for id in "${conmon_ids[@]}"; do "$RUNC" --root "$work/conmon/runc" kill "$id" KILL; done
  for id in "${conmon_ids[@]}"; do
    f=$work/conmon/$id/conmon.pid
    p=$(tr -dc 0-9 <"$f")
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
    "$RUNC" --root "$work/conmon/runc" delete -f "$id" >/dev/null 2>&1 || true
  done
  conmon_ids=()
fi

if on BENCH_CONTAINERD; then
  c=$work/containerd
  mkdir -p "$c"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
EOF
  containerd --config "$c/config.toml" >"$c/log" 2>&1 &
  pids+=($!)
  ctr_addr=$c/containerd.sock
  cctr() { ctr -a "$ctr_addr" -n bench "$@"; }
  wait_until 30 cctr version || { tail "$c/log"; exit 1; }
  cctr images import --base-name docker.io/library/busybox "$work/busybox.tar" >/dev/null
  img=$(cctr images ls -q | grep busybox | head -n1)
  # Each run needs a name of its own (the counter lives in time_runs' subshell).
  ctr_seq=0
  ctr_run() {
    ctr_seq=$((ctr_seq + 1))
    cctr run --rm --cgroup "$CG/ctr-run-$ctr_seq" "$img" "run-$ctr_seq" true
  }
  run_us[ctr]=$(time_runs "$RUNS" ctr_run)
  order+=(ctr)
  echo "ctr run --rm: $(ms "${run_us[ctr]}") ms"
  for ((i = 0; i < IDLE; i++)); do
    cctr run -d --null-io --cgroup "$CG/ctr-$i" "$img" "idle-$i" sleep 1d >/dev/null
  done
  sleep 2
  spids=()
  for ((i = 0; i < IDLE; i++)); do
    # The shim is the parent of the container's init.
    init=$(tr -dc 0-9 <"$c/state/io.containerd.runtime.v2.task/bench/idle-$i/init.pid")
    spids+=("$(awk '{print $4}' "/proc/$init/stat")")
  done
  mem[containerd-shim-runc-v2]=$(mem_of_all "${spids[@]}")
  echo "containerd-shim-runc-v2: PSS/USS/RSS KiB ${mem[containerd-shim-runc-v2]}"
  for ((i = 0; i < IDLE; i++)); do cctr tasks kill -s KILL "idle-$i" >/dev/null; done
  for ((i = 0; i < IDLE; i++)); do
    wait_until 10 sh -c "! ctr -a '$ctr_addr' -n bench tasks ls | grep -q '^idle-$i .*RUNNING'" || true
    cctr tasks rm -f "idle-$i" >/dev/null 2>&1 || true
    cctr containers rm "idle-$i" >/dev/null 2>&1 || true
  done
fi

if on BENCH_DOCKER; then
  dr=$work/docker
  mkdir -p "$dr"
  dockerd --data-root "$dr/data" --exec-root "$dr/exec" --pidfile "$dr/docker.pid" \
    -H "unix://$dr/docker.sock" --containerd-namespace "$tag" --cgroup-parent "$CG/docker" \
    --bridge=none --iptables=false --ip-masq=false >"$dr/log" 2>&1 &
  pids+=($!)
  export DOCKER_HOST="unix://$dr/docker.sock"
  wait_until 60 docker info || { tail "$dr/log"; exit 1; }
  docker load -q -i "$work/busybox.tar" >/dev/null
  run_us[docker]=$(time_runs "$RUNS" docker run --rm --network none busybox true)
  order+=(docker)
  echo "docker run --rm: $(ms "${run_us[docker]}") ms"
fi

# --- the table -------------------------------------------------------------------------
b=${run_us[berth]}
echo
echo "run --rm busybox true, no network (median of $RUNS)"
for t in "${order[@]}"; do
  u=${run_us[$t]}
  awk -v t="$t" -v u="$u" -v b="$b" 'BEGIN {
    printf "  %-8s %8.1f ms   %6.2fx berth\n", t, u / 1000, u / b }'
done
echo "per-container monitor, $IDLE idle containers (mean per process)"
printf '  %-25s %9s %9s %9s\n' "" "PSS KiB" "USS KiB" "RSS KiB"
for t in berth-shim containerd-shim-runc-v2 conmon; do
  [ -n "${mem[$t]:-}" ] || continue
  read -r p u r <<<"${mem[$t]}"
  printf '  %-25s %9d %9d %9d   PSS %.2f MiB\n' "$t" "$p" "$u" "$r" "$(awk -v k="$p" 'BEGIN {print k / 1024}')"
done
read -r bp _ <<<"${mem[berth-shim]}"
for t in containerd-shim-runc-v2 conmon; do
  [ -n "${mem[$t]:-}" ] || continue
  read -r p _ <<<"${mem[$t]}"
  awk -v t="$t" -v p="$p" -v b="$bp" 'BEGIN { printf "  berth-shim PSS is %.2fx %s'"'"'s\n", b / p, t }'
done
if [ -n "$ps_us" ]; then
  echo "berthctl ps with $PS_CONTAINERS running containers (median of $PS_RUNS): $(ms "$ps_us") ms"
fi
verdict() { if [ "$1" -lt "$2" ]; then echo met; else echo MISSED; fi; }
echo "targets:"
echo "  berth run --rm under 30 ms: $(verdict "$b" 30000)"
echo "  berth-shim PSS under 1 MiB: $(verdict "$bp" 1024)"
[ -n "$ps_us" ] && echo "  ps with $PS_CONTAINERS running under 20 ms: $(verdict "$ps_us" 20000)"
true
