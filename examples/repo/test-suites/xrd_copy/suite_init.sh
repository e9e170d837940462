#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "Initializing test suite on slave @slavename@"
mkdir -p data
: > xrd-@slavename@.log
