# hamt export vs ipfs get against a real Kubo v0.42.0 (branch t14-export); needs a daemon started by
# /work/shared/kubo/start.sh 127.0.0.1:15201 127.0.0.1:18280 with KUBO_STATE_DIR=/tmp/kubo-state-exp,
# add.txt (ipfs add -r root) and root.txt (hamt import root) beside it, and m.sh (the lead's m() timer).
# usage: bench.sh reps bin...   (daemon already running; outputs kept until the end so no run
# creates files where thousands were just deleted: ext4 without a journal scans recently deleted
# inodes on every create, see BENCHMARKS.md)
cd /tmp/exp-bench
source m.sh
export KUBO_STATE_DIR=/tmp/kubo-state-exp
export IPFS_PATH=$(sed -n 's/^IPFS_PATH=//p' $KUBO_STATE_DIR/kubo-15201.env)
export KPID=$(sed -n 's/^PID=//p' $KUBO_STATE_DIR/kubo-15201.env)
H="--kubo-rpc http://127.0.0.1:15201 --kubo-gateway http://127.0.0.1:18280"
ADD=$(cat add.txt); ROOT=$(cat root.txt)
REPS=$1; shift
mkdir -p out; RUN=$(date +%H%M%S)
for r in $(seq $REPS); do
  sync; m "r$r ipfs-get" ~/kubo/ipfs get -o out/$RUN-get-$r $ADD
  for b in "$@"; do sync; m "r$r $b" ./$b $H export $ROOT out/$RUN-$b-$r; done
done
sync
