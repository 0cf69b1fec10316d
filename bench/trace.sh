#!/usr/bin/env bash
# bench/trace.sh — engine/trace's summary path against tshark and tcpdump.
#
# 1. Captures mixed lab runs with `fieldcon trace -w`: the rhcp-dhcp lab
#    (RHCP probe and stop, unicast DHCP, ARP, ICMPv6) with bounded iperf3 TCP
#    and UDP flows and pings, and the tunnel lab (handshake, heartbeats, data
#    messages, the TUN devices' raw IP) with a bounded iperf3 flow and pings
#    through the tunnel; merged into one file with mergecap.
# 2. On that one file, on one pinned core: bench/trace (decode to summaries;
#    decode + one-line text; decode + ring), `tshark -r` and `tcpdump -nr`
#    (which also decode and print one line per packet), best of 3 each.
# 3. Heap of 1,000,000 buffered summaries.
#
# Needs root (lab namespaces), iperf3, tshark, tcpdump. Touches nothing
# outside the lab's own namespaces (fc-<lab>-*), which it removes.
#   sudo bench/trace.sh            # OUT=dir keeps the capture and logs
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/trace.sh: needs root for the lab's network namespaces" >&2; exit 2; }
for b in iperf3 tshark tcpdump taskset mergecap; do
	command -v "$b" >/dev/null || { echo "bench/trace.sh: needs $b" >&2; exit 2; }
done
out=${OUT:-$(mktemp -d /tmp/fieldcon-bench-trace.XXXXXX)}
mkdir -p "$out"
cap=$out/mixed.pcapng
lab=bt$$
ns() { echo "fc-$lab-$1"; }
core=${CORE:-1}

go build -o "$out/fieldcon" ./cmd/fieldcon
go build -o "$out/bench-trace" ./bench/trace

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

if [ ! -s "$cap" ]; then
	echo "== capturing a mixed run of the rhcp-dhcp lab ($lab) into $out/rhcp.pcapng"
	"$out/fieldcon" trace -p rhcp-dhcp --lab --lab-name "$lab" --state "$out/state" --run --for 16s \
		-w "$out/rhcp.pcapng" >"$out/trace-rhcp.txt" 2>"$out/trace-rhcp.err" &
	tpid=$!
	for _ in $(seq 100); do # wait for the device's RHCP address
		ip -n "$(ns device)" -4 addr show 2>/dev/null | grep -q 203.0.113.10 && break
		sleep 0.1
	done
	ip netns exec "$(ns server)" iperf3 -s -1 -p 5201 >/dev/null 2>&1 & pids+=($!)
	ip netns exec "$(ns server)" iperf3 -s -1 -p 5202 >/dev/null 2>&1 & pids+=($!)
	sleep 0.5
	ip netns exec "$(ns device)" iperf3 -c 198.51.100.1 -p 5201 -t 3 -b 100M -M 1200 >/dev/null
	ip netns exec "$(ns device)" iperf3 -c 198.51.100.1 -p 5202 -u -b 20M -l 256 -t 2 >/dev/null
	ip netns exec "$(ns device)" ping -c 50 -i 0.02 -q 198.51.100.1 >/dev/null || true
	wait "$tpid"
	tail -1 "$out/trace-rhcp.err"

	lab=${lab}t
	echo "== capturing the tunnel lab ($lab) with traffic through the tunnel into $out/tunnel.pcapng"
	"$out/fieldcon" trace -p tunnel --lab --lab-name "$lab" --state "$out/state-tunnel" --run --for 14s \
		-w "$out/tunnel.pcapng" >"$out/trace-tunnel.txt" 2>"$out/trace-tunnel.err" &
	tpid=$!
	for _ in $(seq 100); do # wait for the client's virtual address
		ip -n "$(ns client)" -4 addr show 2>/dev/null | grep -q 198.19.0. && break
		sleep 0.1
	done
	sleep 1.5 # the trace picks the new TUN devices up within a second
	ip netns exec "$(ns dest)" iperf3 -s -1 -p 5203 >/dev/null 2>&1 & pids+=($!)
	sleep 0.5
	ip netns exec "$(ns client)" iperf3 -c 198.51.100.2 -p 5203 -t 3 -b 30M -M 1200 >/dev/null || echo "iperf3 through the tunnel failed"
	ip netns exec "$(ns client)" ping -c 50 -i 0.02 -q 198.51.100.2 >/dev/null || true
	wait "$tpid"
	tail -1 "$out/trace-tunnel.err"
	mergecap -w "$cap" "$out/rhcp.pcapng" "$out/tunnel.pcapng"
fi

# best_of CMD...: the fastest of three runs, in seconds.
best_of() {
	local best=""
	for _ in 1 2 3; do
		local s e
		s=$(date +%s%N)
		"$@" >/dev/null 2>&1
		e=$(date +%s%N)
		local d=$(( e - s ))
		if [ -z "$best" ] || [ "$d" -lt "$best" ]; then best=$d; fi
	done
	echo "scale=3; $best / 1000000000" | bc
}

n=$(tshark -r "$cap" -T fields -e frame.number 2>/dev/null | wc -l)
echo "== $n packets; one core (taskset -c $core)"
taskset -c "$core" "$out/bench-trace" -r "$cap" -passes 5
t_tshark=$(best_of taskset -c "$core" tshark -r "$cap")
t_tshark1=$(best_of taskset -c "$core" tshark -r "$cap" -c 1)
t_tcpdump=$(best_of taskset -c "$core" tcpdump -nr "$cap")
rate() { echo "scale=0; $n / $1" | bc; }
echo "tshark -r (one line per packet)  $(rate "$t_tshark") packets/s  ($t_tshark s; startup alone $t_tshark1 s)"
t_tshark_net=$(echo "$t_tshark - $t_tshark1" | bc)
echo "tshark -r without its startup    $(rate "$t_tshark_net") packets/s"
echo "tcpdump -nr                      $(rate "$t_tcpdump") packets/s  ($t_tcpdump s)"
echo "(capture and logs in $out)"
