#!/bin/bash
# Every host has its own name and address, and knows everyone else's.
source "$PHALANX_FUNCTIONS"
set -e
log "I am $(hostname -f) at @address@"
# As on any Linux machine (and XrdTest's guests): `hostname` is the short
# name, `hostname -f` the full one.
[ "$(hostname)" = "@shortname@" ]
[ "$(hostname -f)" = "@slavename@" ]
ip -4 -o addr show dev eth0 | grep -qw "inet @address@/24"
for name in web1.lab.test web1 www.lab.test web2 cli1 cli2.lab.test; do
    getent hosts "$name" | grep -q .
done
[ "$(getent hosts www.lab.test | cut -d' ' -f1)" = "@host:web1@" ]
[ "$(getent hosts cli2 | cut -d' ' -f1)" = "$PHALANX_HOST_CLI2" ]
[ "$(getent hosts master.lab.test | cut -d' ' -f1)" = "@coordinator@" ]
log "names resolve: www.lab.test is @host:www.lab.test@, the coordinator @coordinator@"
