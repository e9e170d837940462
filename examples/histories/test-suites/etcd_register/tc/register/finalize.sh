#!/bin/bash
source "$PHALANX_FUNCTIONS"
[ -f etcd.pid ] && kill "$(cat etcd.pid)" 2>/dev/null
rm -rf etcd.data etcd.pid
exit 0
