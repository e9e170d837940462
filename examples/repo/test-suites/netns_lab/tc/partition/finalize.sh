#!/bin/bash
# The server would end with the case anyway; this says so out loud.
source "$PHALANX_FUNCTIONS"
if [ -f web1.pid ]; then
    kill "$(cat web1.pid)" 2>/dev/null || true
    rm -f web1.pid
fi
exit 0
