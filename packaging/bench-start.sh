#!/bin/sh
# Start time of `knit up`: from exec to the admin API answering `knit node ls`, in a fresh
# data dir (the peer creates a cluster: CA and node keys) and again in the same data dir
# (a restart). Usage: packaging/bench-start.sh KNIT_BINARY [RUNS] (run it as the e2e tests
# run: `flock /tmp/knit-e2e.lock ...`, one cluster at a time).
BIN=$1; RUNS=${2:-10}
for kind in fresh restart; do
  D=$(mktemp -d /tmp/knit-bench-up.XXXX)
  for i in $(seq "$RUNS"); do
    [ "$kind" = fresh ] && { rm -rf "$D"; mkdir -p "$D"; }
    start=$(date +%s%N)
    "$BIN" up --data-dir "$D" --listen 127.0.98.1:7946 --ingress-addr 127.0.98.1 \
      --profile fast >"$D.log" 2>&1 &
    P=$!
    until "$BIN" --api "$D/knit.sock" node ls -q >/dev/null 2>&1; do sleep 0.005; done
    end=$(date +%s%N)
    echo "$kind $(( (end - start) / 1000000 ))"
    kill -TERM $P; wait $P
  done
  rm -rf "$D" "$D.log"
done
