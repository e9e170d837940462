#!/bin/bash
# web1 serves its name; the others only take part in the partition.
source "$PHALANX_FUNCTIONS"
[ "@shortname@" = web1 ] || exit 0
mkdir -p www && hostname -f > www/index.html
python3 -m http.server --bind @address@ --directory www @web_port@ > server.log 2>&1 &
echo $! > web1.pid
for _ in $(seq 100); do
    python3 -c 'import socket; socket.create_connection(("@address@", @web_port@), 1)' 2>/dev/null && break
    sleep 0.1
done
log "serving on @address@:@web_port@"
