#!/bin/bash
source "$PHALANX_FUNCTIONS"
log "preparing @slavename@ (role @role@) for run @run_id@"
: > hello.log
