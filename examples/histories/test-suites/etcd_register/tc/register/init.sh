#!/bin/bash
# Each host starts its etcd member; the case goes on once the cluster is healthy.
source "$PHALANX_FUNCTIONS"
set -e
rm -rf etcd.data history*.jsonl
etcd --name @shortname@ --data-dir "$PWD/etcd.data" \
    --listen-peer-urls http://@address@:2380 \
    --initial-advertise-peer-urls http://@address@:2380 \
    --listen-client-urls http://@address@:2379,http://127.0.0.1:2379 \
    --advertise-client-urls http://@address@:2379 \
    --initial-cluster e1=http://10.78.0.11:2380,e2=http://10.78.0.12:2380,e3=http://10.78.0.13:2380 \
    --initial-cluster-token "etcd-@run_id@" --initial-cluster-state new \
    > etcd.log 2>&1 &
echo $! > etcd.pid
phalanx-sync started
for _ in $(seq 100); do
    etcdctl --endpoints=127.0.0.1:2379 endpoint health > /dev/null 2>&1 && break
    sleep 0.2
done
etcdctl --endpoints=127.0.0.1:2379 endpoint health
