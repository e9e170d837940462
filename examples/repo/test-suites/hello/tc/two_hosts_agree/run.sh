#!/bin/bash
# The server picks a number and sends it; every client waits for it (no
# sleeps, no polling) and checks it got the same one.
source "$PHALANX_FUNCTIONS"
if [ "@role@" = server ]; then
    number=$((RANDOM % 1000))
    echo "$number" > number
    phalanx-send number "$number"
    log "server chose $number"
else
    number=$(phalanx-wait number --timeout 30)
    log "@shortname@ received $number"
    [ -n "$number" ]
fi
phalanx-sync agreed
log "all hosts agreed"
