#!/bin/bash
# Shared by both cases (leader_reads links here): $PHALANX_CASE says where
# the store answers reads from.
source "$PHALANX_FUNCTIONS"
set -u
# The interpreter phalanx runs on (the one phalanx-op starts with).
PY=$(sed -n '1s/^#!//p' "$(command -v phalanx-op)")

if [ "@role@" = store ]; then
    reads_from=leader
    [ "$PHALANX_CASE" = follower_reads ] && reads_from=follower
    "$PY" - "$reads_from" <<'STORE' > store.log 2>&1 &
import http.server, json, sys, threading, time
reads_from = sys.argv[1]
leader, follower, lock = {}, {}, threading.Lock()

def replicate():  # the follower catches up every 300 ms
    while True:
        time.sleep(0.3)
        with lock:
            follower.update(leader)

class Store(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            value = (leader if reads_from == "leader" else follower).get(self.path[1:])
        body = json.dumps(value).encode()  # a read's output is JSON: null when unset
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def do_PUT(self):
        value = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with lock:
            leader[self.path[1:]] = value
        self.send_response(204); self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Store)
threading.Thread(target=replicate, daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
STORE
    store=$!
    for _ in $(seq 50); do [ -s store.log ] && break; sleep 0.1; done
    phalanx-send url "http://127.0.0.1:$(head -1 store.log)"
fi

if [ "@role@" = client ]; then
    url=$(phalanx-wait url --timeout 30)
    me=@shortname@
    export PHALANX_CLIENT=0  # one client on each host: c1.phalanx.test/0, ...
    # Each operation goes to the coordinator as it is recorded: the case's
    # history, from all three clients, checked by the case's `check:`.
    for i in $(seq 10); do
        phalanx-op --key x --timeout 5 write "$me-$i" -- curl -sf -X PUT --data "$me-$i" "$url/x"
        phalanx-op --key x --timeout 5 read -- curl -sf "$url/x" > /dev/null
    done
fi

phalanx-sync recorded

if [ "@role@" = store ]; then
    kill "$store"
fi
