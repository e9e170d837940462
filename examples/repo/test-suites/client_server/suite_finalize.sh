#!/bin/bash
source "$PHALANX_FUNCTIONS"
if [ -f server.pid ]; then
    kill "$(cat server.pid)" 2>/dev/null || true
    log "server stopped"
fi
