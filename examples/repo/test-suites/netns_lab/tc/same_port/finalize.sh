#!/bin/bash
source "$PHALANX_FUNCTIONS"
[ -f server.pid ] && kill "$(cat server.pid)" 2>/dev/null
exit 0
