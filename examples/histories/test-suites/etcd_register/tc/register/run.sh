#!/bin/bash
# A client on every member; e1 also runs the nemesis: every 2 s it
# partitions or isolates members (picked by the seed), then heals. Requests that time out are `info` (they may
# have happened): etcdctl exits 1 for those too, so every error is mapped
# to exit 2 here; only what certainly did not happen may be `fail`.
source "$PHALANX_FUNCTIONS"
set -u
export PHALANX_HISTORY=$PWD/history.jsonl PHALANX_CLIENT=0
rm -f "$PHALANX_HISTORY"
PY=$(sed -n '1s/^#!//p' "$(command -v phalanx-op)")
ctl="etcdctl --endpoints=127.0.0.1:2379 --dial-timeout=1s --command-timeout=1s"
me=@shortname@

phalanx-sync go
if [ "$me" = e1 ]; then
    phalanx-nemesis --hosts e1,e2,e3 --every 2s --for 9s --seed 7 \
        partition-halves partition-random isolate-random &
    nemesis=$!
fi
end=$((SECONDS + 10))
i=0
while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    # `|| true`: a stage runs under `bash -e`, and an operation that timed
    # out is an outcome to record, not the end of the client.
    phalanx-op --key x --timeout 3 write "$me-$i" -- sh -c "$ctl put x $me-$i > /dev/null 2>&1 || exit 2" || true
    phalanx-op --key x --timeout 3 read -- sh -c "$ctl get --print-value-only x 2> /dev/null || exit 2" > /dev/null || true
done
if [ "$me" = e1 ]; then wait "$nemesis"; fi
log "$i writes and reads on $me, $(grep -c "\"type\": \"info\"" "$PHALANX_HISTORY") of them info (timed out)"
phalanx-send "history-$me" "$(cat "$PHALANX_HISTORY")"
if [ "$me" = e1 ]; then
    for host in e1 e2 e3; do
        phalanx-wait "history-$host" --timeout 30 > "history-$host.jsonl"
    done
    "$PY" -m phalanx check --model register --merge history-e1.jsonl history-e2.jsonl history-e3.jsonl
fi
