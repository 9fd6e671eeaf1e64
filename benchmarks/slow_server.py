"""A loopback file server for the fetch benchmark: every request waits DELAY seconds first (a
slow registry), ETag/If-None-Match are honoured with 304, and GET /_counts returns the number of
requests so far. Binds 127.0.0.1 only. Usage: slow_server.py DIR DELAY PORT_FILE"""
import hashlib
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root, delay, port_file = sys.argv[1], float(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
counts = {"requests": 0, "not_modified": 0}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/_counts":
            body = f"{counts['requests']} {counts['not_modified']}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with lock:
            counts["requests"] += 1
        time.sleep(delay)
        path = os.path.join(root, self.path.split("?")[0].lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            with lock:
                counts["not_modified"] += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
