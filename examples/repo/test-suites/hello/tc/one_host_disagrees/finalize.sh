#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "cleaning up after the disagreement (finalize always runs)"
