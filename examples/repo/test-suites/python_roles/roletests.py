"""A server/client test as CloudPunch users write them: a Thread subclass,
config in __init__, the outcome in final_results.

Shipped to each host as source text; phalanx is importable there, so hosts
coordinate with phalanx.send / phalanx.wait instead of sleeping.
"""

import socket
import threading
import time

import phalanx

PAYLOAD = b"x" * 64


class EchoLatency(threading.Thread):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.final_results = "NoData"

    def run(self):
        if self.config["role"] == "server":
            self.serve()
        else:
            self.measure()

    def serve(self):
        with socket.create_server(("0.0.0.0", 0)) as listener:
            listener.settimeout(30)
            port = listener.getsockname()[1]
            phalanx.send("port-" + self.config["hostname"], str(port))
            conn, _ = listener.accept()
            echoed = 0
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)
                    echoed += len(data)
        self.final_results = {"echoed_bytes": echoed}

    def measure(self):
        port = int(phalanx.wait("port-" + self.config["match_host"], timeout=30))
        rounds = int(self.config["rounds"])
        with socket.create_connection((self.config["match_ip"], port), timeout=10) as conn:
            started = time.perf_counter()
            for _ in range(rounds):
                conn.sendall(PAYLOAD)
                received = 0
                while received < len(PAYLOAD):
                    received += len(conn.recv(len(PAYLOAD) - received))
            elapsed = time.perf_counter() - started
        self.final_results = {"rounds": rounds, "rtt_us": round(elapsed / rounds * 1e6, 1)}
