#!/bin/bash
# The server starts an HTTP server on a free port of its own address (the
# one its clients are told: loopback on local hosts, its IP on netns or VM
# hosts) and announces its URL.
source "$PHALANX_FUNCTIONS"
[ "@role@" = server ] || exit 0
mkdir -p www
head -c 200000 /dev/urandom > www/payload.bin
sha256sum www/payload.bin | cut -d' ' -f1 > www/payload.sha256
mkfifo server.port
python3 -u - > server.log 2>&1 <<'PY' &
import functools, http.server
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="www")
server = http.server.ThreadingHTTPServer(("@host:srv1@", 0), handler)
with open("server.port", "w") as port:
    port.write(f"{server.server_address[1]}\n")
server.serve_forever()
PY
echo $! > server.pid
read -r port < server.port
log "serving on port $port"
phalanx-send url "http://@host:srv1@:$port"
