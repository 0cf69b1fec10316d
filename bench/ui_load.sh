#!/usr/bin/env bash
# Measures the real console (the fieldcon binary in a terminal) on the demo
# lab with the trace ring full and ~20,000 packets/s arriving: resident
# memory and CPU of the process, and the bytes/s it writes to the terminal.
#
# Root (network namespaces). The lab gets a unique name and is removed by
# the console's own q; traffic is iperf3 UDP between two lab namespaces on
# 198.51.100.0/24, bounded in time. Figures: bench/ui.md.
#
#   sudo bench/ui_load.sh            # GOGC as the console sets it (25)
#   sudo GOGC=100 bench/ui_load.sh   # Go's default, for comparison
set -euo pipefail
cd "$(dirname "$0")/.."
for p in tmux iperf3 script; do command -v "$p" >/dev/null || { echo "needs $p" >&2; exit 2; }; done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces): sudo $0" >&2; exit 2; }

OUT=$(mktemp -d /tmp/fieldcon-ui-bench.XXXXXX)
LAB=uib$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
SOCK=fcuib-$LAB
go build -o "$OUT/fieldcon" ./cmd/fieldcon
trap 'tmux -L "$SOCK" kill-server 2>/dev/null || true; "$OUT/fieldcon" lab down -p demo --lab-name "$LAB" >/dev/null 2>&1 || true' EXIT

envs=""
[ -n "${GOGC:-}" ] && envs="GOGC=$GOGC "
tmux -L "$SOCK" new-session -d -x 120 -y 40 \
  "script -q -f -c '${envs}$OUT/fieldcon -p demo --lab --lab-name $LAB --state $OUT/state 2>$OUT/stderr' $OUT/typescript; echo \$? >$OUT/exit; sleep 600"
for _ in $(seq 50); do ip netns list 2>/dev/null | grep -q "fc-$LAB-router" && break; sleep 0.2; done
sleep 3
pid=$(pgrep -f "^$OUT/fieldcon -p demo" | head -1)
tmux -L "$SOCK" send-keys 2      # the trace view, following

# 20,000 UDP datagrams/s of 72 bytes (11.52 Mbit/s) for 70 s, server → router.
ip netns exec "fc-$LAB-router" iperf3 -s -1 -p 5201 >"$OUT/iperf-s" 2>&1 &
sleep 1
ip netns exec "fc-$LAB-server" iperf3 -c 198.51.100.2 -p 5201 -u -b 11.52M -l 72 -t 70 >"$OUT/iperf-c" 2>&1 &
client=$!

sleep 50                          # the ring (1,048,576 summaries) is full by then
ticks() { awk '{print $14+$15}' "/proc/$pid/stat"; }
t1=$(ticks); b1=$(stat -c %s "$OUT/typescript")
sleep 10
t2=$(ticks); b2=$(stat -c %s "$OUT/typescript")
hz=$(getconf CLK_TCK)
echo "trace view: $(tmux -L "$SOCK" capture-pane -p | sed -n 3p)"
echo "cpu: $(( (t2-t1) * 100 / hz / 10 ))% of one core (whole process: capture, engine, console)"
grep -E 'VmRSS|VmHWM' "/proc/$pid/status"
echo "terminal output: $(( (b2-b1) / 10 )) bytes/s"
wait "$client" || true
tail -3 "$OUT/iperf-c"

tmux -L "$SOCK" send-keys q
for _ in $(seq 100); do [ -s "$OUT/exit" ] && break; sleep 0.2; done
echo "exit: $(cat "$OUT/exit")"; cat "$OUT/stderr"
left=$(ip netns list 2>/dev/null | grep -c "fc-$LAB-" || true)
echo "namespaces left: $left"
