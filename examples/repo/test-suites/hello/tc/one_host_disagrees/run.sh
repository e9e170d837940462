#!/bin/bash
# Fails on purpose on one host, to show what a failure looks like: the case
# fails, the other hosts pass, and the suite goes on.
source "$PHALANX_FUNCTIONS"
if [ "@shortname@" = cli3 ]; then
    log "cli3 disagrees"
    assert_fail true
fi
log "@shortname@ agrees"
