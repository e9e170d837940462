#!/bin/bash
source "$PHALANX_FUNCTIONS"
rm -rf data
log "Finalized @slavename@"
