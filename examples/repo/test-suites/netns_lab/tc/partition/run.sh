#!/bin/bash
# A partition puts cli1 on the other side from web1: its requests time out
# (the packets are dropped, as on a real network), while cli2, on web1's
# side, is served. After `phalanx-net heal` cli1 is served again. Whatever
# a case leaves broken is healed when it ends anyway.
source "$PHALANX_FUNCTIONS"
set -e
fetch() { curl -fsS --max-time 3 "http://web1.lab.test:@web_port@/" > /dev/null; }

if [ "@shortname@" = cli1 ]; then
    phalanx-net partition web1,cli2 web2,cli1
    log "partitioned: web1, cli2 | web2, cli1"
fi
phalanx-sync partitioned

if [ "@shortname@" = cli1 ]; then
    code=0; fetch || code=$?
    [ "$code" = 28 ]   # curl: timed out (a refused connection would be 7)
    log "web1 did not answer across the partition: timed out"
elif [ "@shortname@" = cli2 ]; then
    fetch
    log "web1 answers on its own side of the partition"
fi
phalanx-sync checked

if [ "@shortname@" = cli1 ]; then
    phalanx-net heal
    fetch
    log "healed: web1 answers again"
fi
