#!/bin/bash
source "$PHALANX_FUNCTIONS"
if [ "@slavename@" = "client1.xrd.test" ]; then
    head -c 4096 /dev/urandom > data/source.bin
fi
log "copy_to initialized on @slavename@"
