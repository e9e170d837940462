#!/bin/bash
source "$PHALANX_FUNCTIONS"
if [ "@role@" = client ]; then
    url=$(phalanx-wait url --timeout 30)
    log "fetching $url/payload.bin"
    python3 - "$url" <<'PY'
import sys, urllib.request
base = sys.argv[1]
for name in ("payload.bin", "payload.sha256"):
    with urllib.request.urlopen(f"{base}/{name}", timeout=10) as reply, open(name, "wb") as out:
        out.write(reply.read())
PY
    [ "$(sha256sum payload.bin | cut -d' ' -f1)" = "$(cat payload.sha256)" ]
    log "checksum matches"
fi
phalanx-sync fetched
if [ "@role@" = server ]; then
    fetches=$(grep -c 'GET /payload.bin' server.log)
    log "payload fetched $fetches times"
    [ "$fetches" -eq 3 ]
fi
