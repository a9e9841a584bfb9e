#!/usr/bin/env bash
# bench-media.sh - the media benchmark behind `make bench-media`: for each
# session count a fresh earshotd pinned to core 0 and earshot-loadtest
# pinned to core 1 (PLATFORM.md, "This machine as a load-test bench").
# Writes bench/media.md (machine, commit, date, one table row per count and
# each run's summary), bench/media-N.json and bench/media-N.svg (the run's
# time series, drawn by gnuplot).
#
#   BENCH_SESSIONS  session counts to run (default "50 100 200 400")
#   BENCH_SECONDS   steady-state seconds measured per count (default 10)
#   BENCH_TICK_MS   the generator's send tick (default 20: every leg sends
#                   at once each 20 ms; less spreads the legs over the 20 ms)
#   BENCH_QUIET_WAIT  seconds to wait for other work on this machine to
#                   settle before each run (default 120)
#   BUILD           where the binaries are (default build)
set -euo pipefail

build="${BUILD:-build}"
sessions="${BENCH_SESSIONS:-50 100 200 400}"
secs="${BENCH_SECONDS:-10}"
tick_ms="${BENCH_TICK_MS:-20}"
quiet_wait="${BENCH_QUIET_WAIT:-120}"
quiet_pct=10
out=bench
server_core=0
generator_core=1

die() {
  echo "bench-media: $*" >&2
  exit 1
}

# command:package
for tool in taskset:util-linux jq:jq curl:curl gnuplot:gnuplot-nox; do
  command -v "${tool%%:*}" >/dev/null || die "needs ${tool%%:*} (apt-get install ${tool#*:})"
done
for bin in earshotd earshot-loadtest; do
  [ -x "$build/$bin" ] || die "$build/$bin is missing: run make first"
done
[ "$(nproc)" -ge 2 ] || die "needs two cores to keep server and generator apart"

server_pid=""
port=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

# A fresh server per count: its counters, memory peak and state start clean.
# --port 0 lets the kernel pick a free port (no race with another
# listener); the banner says which. Sets server_pid and port (no command
# substitution: the server must be this shell's child).
start_server() {
  local log="$1"
  port=""
  taskset -c "$server_core" "$build/earshotd" --port 0 --log-level warn \
    --media-max-pps 100 >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    port="$(sed -n 's|.*listening on http://[^ ]*:\([0-9][0-9]*\).*|\1|p' "$log")"
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || die "earshotd exited at start; see $log"
    sleep 0.05
  done
  [ -n "$port" ] || die "earshotd did not start within 10 s; see $log"
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || die "earshotd does not answer /healthz"
  [ "$(cat "/proc/$server_pid/comm")" = earshotd ] || die "pid $server_pid is not earshotd"
}

# The busiest CPU's busy percentage over one second.
busiest_cpu() {
  local a b
  a="$(grep '^cpu[0-9]' /proc/stat)"
  sleep 1
  b="$(grep '^cpu[0-9]' /proc/stat)"
  paste -d' ' <(echo "$a") <(echo "$b") | awk '
    { b1 = $2 + $3 + $4 + $7 + $8; t1 = b1 + $5 + $6 + $9
      b2 = $13 + $14 + $15 + $18 + $19; t2 = b2 + $16 + $17 + $20
      p = t2 > t1 ? 100 * (b2 - b1) / (t2 - t1) : 0; if (p > m) m = p }
    END { printf "%d\n", m }'
}

# Others may share this machine (tests, builds): numbers taken next to them
# mean little, so wait for a quiet moment, for a while.
wait_quiet() {
  local waited=0 busy
  while busy="$(busiest_cpu)"; [ "$busy" -gt "$quiet_pct" ]; do
    if [ "$waited" -ge "$quiet_wait" ]; then
      echo "bench-media: a CPU is still ${busy} % busy after ${quiet_wait} s; measuring anyway" >&2
      return 0
    fi
    [ "$waited" -eq 0 ] && echo "bench-media: waiting for the machine to be quiet (a CPU is ${busy} % busy)" >&2
    waited=$((waited + 1))
  done
}

mkdir -p "$out"
md="$out/media.md"
commit="$(git describe --always --dirty 2>/dev/null || echo unknown)"
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
rows=""
details=""

for n in $sessions; do
  wait_quiet
  echo "== $n voice sessions" >&2
  log="$out/earshotd-$n.log"
  start_server "$log"
  json="$out/media-$n.json"
  summary="$out/media-$n.txt"
  rc=0
  taskset -c "$generator_core" "$build/earshot-loadtest" --url "ws://127.0.0.1:$port/ws" \
    --server-pid "$server_pid" --voice-sessions "$n" --seconds "$secs" --tick-ms "$tick_ms" \
    --json "$json" --plot "$out/media-$n.svg" \
    | tee "$summary" || rc=$?
  stop_server
  [ "$rc" -eq 0 ] || die "earshot-loadtest failed for $n sessions (exit $rc)"
  rows+="$(jq -r '
    def f(d): if . == null then "n/a" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
    [ (.sessions | tostring),
      (.server.relayed_pps | f(0)),
      (.loss_pct | f(3)),
      (.generator_queue_dropped | tostring),
      (.latency_ms.p50 | f(2)), (.latency_ms.p99 | f(2)),
      (.latency_ms.p999 | f(2)), (.latency_ms.max | f(2)),
      (.server.cpu_us_per_packet | f(2)),
      (.server.core_share_pct | f(1)),
      (if .server.peak_rss_kb == null then null else .server.peak_rss_kb / 1024 end | f(1)),
      (.generator.core_share_pct | f(1)),
      (.host_cpus | map(.other_pct | f(0)) | join(" / ")),
      (.host_cpus | map(.steal_pct | f(0)) | join(" / ")),
      (if .server.dropped == null then "n/a"
       else (.server.dropped | to_entries | map(select(.value > 0) | "\(.key) \(.value)")
             | if length == 0 then "0" else join(", ") end) end)
    ] | "| " + join(" | ") + " |"' "$json")"$'\n'
  details+=$'\n'"### $n sessions"$'\n\n```\n'"$(cat "$summary")"$'\n```\n\n'"![$n sessions, second by second](media-$n.svg)"$'\n'
done

{
  echo "# Media benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit"
  echo "- machine: $(nproc) CPUs, $cpu, Linux $(uname -r)"
  echo "- server: \`earshotd --log-level warn --media-max-pps 100\` on core $server_core (fresh per row);" \
       "generator: \`earshot-loadtest\` on core $generator_core"
  echo "- per row: all sessions up, 2 s warm-up, then $secs s measured; every party sends one" \
       "20 ms Opus frame (24 kbps) every 20 ms on a ${tick_ms} ms tick" \
       "$([ "$tick_ms" -ge 20 ] && echo "(all parties send together)" || echo "(parties spread over the 20 ms)")"
  echo "- latency is one-way, generator to generator (both sides' queueing included);" \
       "loss from sequence gaps (unsent by generator: packets its own 1 s send queue dropped because it could not keep up); server CPU from /proc/PID/stat, relayed and dropped from /stats;" \
       "other load: busy time on each CPU beyond the server and the generator pinned there" \
       "(others' work, and loopback TCP's softirq time); steal: time the hypervisor gave to other guests"
  echo
  echo "| sessions | relayed pkt/s | loss % | unsent by generator | p50 ms | p99 ms | p99.9 ms | max ms | server us/pkt | server core % | server peak RSS MB | generator core % | other load % per CPU | steal % per CPU | server drops |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  printf '%s' "$rows"
  echo
  echo "## Runs"
  printf '%s' "$details"
} >"$md"
echo "bench-media: wrote $md" >&2
cat "$md"
