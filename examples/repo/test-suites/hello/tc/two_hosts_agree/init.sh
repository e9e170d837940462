#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "agreeing on a number"
