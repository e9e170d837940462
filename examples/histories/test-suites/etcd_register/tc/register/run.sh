#!/bin/bash
# A client on every member, for 10 s, while the case's nemesis breaks the
# cluster. Requests that time out are `info` (they may have happened):
# etcdctl exits 1 for those too, so every error is mapped to exit 2 here;
# only what certainly did not happen may be `fail`.
source "$PHALANX_FUNCTIONS"
set -u
export PHALANX_CLIENT=0
ctl="etcdctl --endpoints=127.0.0.1:2379 --dial-timeout=1s --command-timeout=1s"
me=@shortname@

phalanx-sync go
end=$((SECONDS + 10))
i=0
info=0
while [ $SECONDS -lt $end ]; do
    i=$((i + 1))
    # `|| info=...`: a stage runs under `bash -e`, and an operation that
    # timed out is an outcome to record, not the end of the client.
    phalanx-op --key x --timeout 3 write "$me-$i" -- sh -c "$ctl put x $me-$i > /dev/null 2>&1 || exit 2" || info=$((info + 1))
    phalanx-op --key x --timeout 3 read -- sh -c "$ctl get --print-value-only x 2> /dev/null || exit 2" > /dev/null || info=$((info + 1))
done
log "$i writes and reads on $me, $info of them info (timed out)"
