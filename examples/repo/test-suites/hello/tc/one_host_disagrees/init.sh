#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "about to disagree"
