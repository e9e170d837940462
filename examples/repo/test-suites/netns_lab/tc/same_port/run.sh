#!/bin/bash
# Clients reach each server by name and get that server's own page.
source "$PHALANX_FUNCTIONS"
set -e
[ "@role@" = client ] || exit 0
for server in web1.lab.test web2.lab.test; do
    page=$(curl -fsS --max-time 10 "http://$server:@web_port@/")
    log "$server:@web_port@ says $page"
    [ "$page" = "$server" ]
done
