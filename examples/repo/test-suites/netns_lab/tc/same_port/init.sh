#!/bin/bash
# Both servers listen on the same port, each on its own address.
source "$PHALANX_FUNCTIONS"
[ "@role@" = server ] || exit 0
mkdir -p www && hostname -f > www/index.html
python3 -m http.server --bind @address@ --directory www @web_port@ > server.log 2>&1 &
echo $! > server.pid
for _ in $(seq 100); do
    python3 -c 'import socket; socket.create_connection(("@address@", @web_port@), 1)' 2>/dev/null && break
    sleep 0.1
done
log "serving on @address@:@web_port@"
