#!/usr/bin/env bash
# export_vs_get.sh — `hamt export ROOT DIR` from a real Kubo against `ipfs get` of the same files on
# the same daemon (issue 14 part 2: target ratio <= 1.0), interleaved, each run into a fresh output
# directory.
#
# usage: bench/export_vs_get.sh [-n PAIRS] [-f FILES] [-w WORKDIR] [-k] [HAMT_BIN...]
#   -n PAIRS    interleaved pairs (default 5); the order within a pair alternates
#   -f FILES    files of 64 KiB of random bytes, plus a zarr.json (default 20000 = 1.31 GB)
#   -w WORKDIR  scratch directory (default /tmp/export-vs-get); needs ~3 × the data per pair free
#   -k          keep the daemon running and the outputs (default: stop it and delete them)
#   HAMT_BIN    hamt binaries to time (default: one built from this checkout); with several, each
#               pair runs `ipfs get` then each binary, so binaries are compared in the same pairs
# environment:
#   IPFS_BIN      Kubo binary (default ~/kubo/ipfs; v0.42.0 is what BENCHMARKS.md reports)
#   KUBO_SCRIPTS  directory of start.sh/stop.sh (default /work/shared/kubo)
#   API_PORT / GW_PORT  loopback ports for the daemon (default 15301 / 18380)
#
# Every line gives wall seconds, the command's user+sys CPU, the daemon's CPU over the run, the
# load average at the start; the end prints, per binary, the median of the per-pair ratios
# export/get. Outputs are kept until the end of all pairs and deleted in bulk then: on ext4
# without a journal, creating files right after deleting tens of thousands costs seconds
# (BENCHMARKS.md, "Measure into fresh directories"): leave a few minutes between two batches.
set -euo pipefail
pairs=5 files=20000 work=/tmp/export-vs-get keep=0
while getopts "n:f:w:kh" o; do
	case $o in
	n) pairs=$OPTARG ;; f) files=$OPTARG ;; w) work=$OPTARG ;; k) keep=1 ;;
	*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
here=$(cd "$(dirname "$0")/.." && pwd)
IPFS_BIN=${IPFS_BIN:-$HOME/kubo/ipfs}
KUBO_SCRIPTS=${KUBO_SCRIPTS:-/work/shared/kubo}
API_PORT=${API_PORT:-15301} GW_PORT=${GW_PORT:-18380}
export KUBO_STATE_DIR=$work/kubo-state
mkdir -p "$work/out"
bins=()
if [ $# -eq 0 ]; then
	(cd "$here" && go build -o "$work/hamt" ./cmd/hamt)
	bins=("$work/hamt")
else
	for b in "$@"; do bins+=("$(cd "$(dirname "$b")" && pwd)/$(basename "$b")"); done
fi

if [ ! -f "$work/data/zarr.json" ] || [ "$(ls "$work/data/c" | wc -l)" != "$files" ]; then
	echo "creating $files files of 64 KiB in $work/data" >&2
	rm -rf "$work/data"; mkdir -p "$work/data/c"
	python3 - "$work/data" "$files" <<'PY'
import os, sys, json
d, n = sys.argv[1], int(sys.argv[2])
json.dump({"zarr_format": 3, "node_type": "array", "shape": [n * 16384], "data_type": "float32",
           "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [16384]}},
           "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
           "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}], "fill_value": 0},
          open(os.path.join(d, "zarr.json"), "w"))
for i in range(n):
    with open(os.path.join(d, "c", str(i)), "wb") as f:
        f.write(os.urandom(65536))
PY
fi

eval "$(IPFS_BIN=$IPFS_BIN "$KUBO_SCRIPTS/start.sh" 127.0.0.1:$API_PORT 127.0.0.1:$GW_PORT)"
state=$KUBO_STATE_DIR/kubo-$API_PORT.env
KPID=$(sed -n 's/^PID=//p' "$state")
export IPFS_PATH; IPFS_PATH=$(sed -n 's/^IPFS_PATH=//p' "$state")
stop() {
	if [ $keep = 0 ]; then
		IPFS_BIN=$IPFS_BIN "$KUBO_SCRIPTS/stop.sh" 127.0.0.1:$API_PORT || true
		rm -rf "$work/out"
	else
		echo "daemon kept: IPFS_BIN=$IPFS_BIN KUBO_STATE_DIR=$KUBO_STATE_DIR $KUBO_SCRIPTS/stop.sh 127.0.0.1:$API_PORT" >&2
	fi
}
trap stop EXIT
H=(--kubo-rpc "$KUBO_RPC_URL" --kubo-gateway "$KUBO_GATEWAY_URL")
ADD=$("$IPFS_BIN" add -r -Q --hash=blake3 --cid-version=1 --raw-leaves "$work/data")
ROOT=$("${bins[0]}" "${H[@]}" import "$work/data" | tail -1)
echo "ipfs add -r: $ADD   hamt import: $ROOT" >&2
log=$work/runs-$(date -u +%Y%m%dT%H%M%S).txt
echo "# $(date -u +%FT%TZ) $(nproc) cores, $files files; kubo $("$IPFS_BIN" version -n 2>/dev/null || true)" | tee "$log"

# m LABEL CMD...: one timed run.
m() {
	local label=$1; shift
	local c0 c1 s e load
	load=$(cut -d' ' -f1 /proc/loadavg)
	sync
	c0=$(awk '{print $14+$15}' /proc/$KPID/stat)
	s=$(date +%s.%N)
	/usr/bin/time -f "%U %S" -o "$work/t.cpu" "$@" >"$work/last.out" 2>"$work/last.err" ||
		{ echo "$label failed:" >&2; cat "$work/last.err" >&2; exit 1; }
	e=$(date +%s.%N)
	c1=$(awk '{print $14+$15}' /proc/$KPID/stat)
	printf '%s wall=%.2f client_cpu=%.2f daemon_cpu=%.2f load=%s\n' "$label" "$(echo "$e - $s" | bc)" \
		"$(awk '{print $1+$2}' "$work/t.cpu")" "$(echo "($c1 - $c0)/$(getconf CLK_TCK)" | bc -l)" "$load" | tee -a "$log"
}
run=$(date +%H%M%S)
for p in $(seq "$pairs"); do
	get() { m "p$p get" "$IPFS_BIN" get -o "$work/out/$run-get-$p" "$ADD"; }
	exp() { for i in "${!bins[@]}"; do m "p$p export$i" "${bins[$i]}" "${H[@]}" export "$ROOT" "$work/out/$run-e$i-$p"; done; }
	if [ $((p % 2)) = 1 ]; then get; exp; else exp; get; fi
done
python3 - "$log" "${bins[@]}" <<'PY'
import re, statistics, sys
runs = {}
for l in open(sys.argv[1]):
    m = re.match(r"p(\d+) (\S+) wall=([\d.]+)", l)
    if m:
        runs.setdefault(m[2], {})[int(m[1])] = float(m[3])
for i, b in enumerate(sys.argv[2:]):
    e = runs.get(f"export{i}", {})
    r = [e[p] / runs["get"][p] for p in e if p in runs.get("get", {})]
    print(f"{b}: export median {statistics.median(e.values()):.2f} s, ipfs get median "
          f"{statistics.median(runs['get'].values()):.2f} s, median of per-pair ratios {statistics.median(r):.2f} "
          f"(min {min(r):.2f}, max {max(r):.2f}, {len(r)} pairs)")
PY
echo "log: $log"
