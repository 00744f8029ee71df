/// Python programs that misbehave on purpose, on 127.0.0.1 only, each started by one test.

/// A one-object S3 stub: serves the file given on its command line as `/<bucket>/<key>` for
/// any bucket and key, HEAD and ranged GET, in one of these modes:
/// `ok`; `short` (a GET's body is half what its headers promise, and its Content-Length says
/// so); `close` (a GET promises the whole range, sends half and hangs up); `flip` (one byte of
/// each GET is changed); `busy` (the first two GETs get 503 SlowDown); `unavailable` (every GET
/// gets 503 SlowDown); `slow` (every answer waits a second, and each request first prints
/// `in-flight N`, how many are being answered at that moment); `forbidden` (403 AccessDenied
/// for everything). It prints one line per request.
enum S3Stub {
    static let script = #"""
        import hashlib, sys, threading, time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        port, mode, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        data = open(path, "rb").read()
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        gets = [0]
        active = [0]
        lock = threading.Lock()
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args):
                pass
            def note(self, status):
                print(self.command, self.path, status, flush=True)
            def xml_error(self, status, code, message):
                body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.note(status)
            def slowly(self, answer):
                with lock:
                    active[0] += 1
                    print("in-flight", active[0], flush=True)
                try:
                    time.sleep(1)
                    answer()
                finally:
                    with lock:
                        active[0] -= 1
            def do_HEAD(self):
                if mode == "slow":
                    return self.slowly(self.answer_head)
                self.answer_head()
            def do_GET(self):
                if mode == "slow":
                    return self.slowly(self.answer_get)
                self.answer_get()
            def answer_head(self):
                if mode == "forbidden":
                    return self.xml_error(403, "AccessDenied", "Access Denied")
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.note(200)
            def answer_get(self):
                if mode == "forbidden":
                    return self.xml_error(403, "AccessDenied", "Access Denied")
                gets[0] += 1
                if (mode == "busy" and gets[0] <= 2) or mode == "unavailable":
                    return self.xml_error(503, "SlowDown", "Please reduce your request rate.")
                first, last = 0, len(data) - 1
                spec = self.headers.get("Range")
                if spec:
                    first, last = (int(x) for x in spec.split("=")[1].split("-"))
                body = bytearray(data[first:last + 1])
                if mode == "flip":
                    body[len(body) // 2] ^= 0x01
                sent = body[: len(body) // 2] if mode in ("short", "close") else body
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
                self.send_header("Content-Length", str(len(body) if mode == "close" else len(sent)))
                self.send_header("ETag", etag)
                self.end_headers()
                # Logged before the body goes out, so the client cannot finish (and a test read
                # the log) before the line is there.
                self.note(206)
                self.wfile.write(bytes(sent))
                self.wfile.flush()
                if mode == "close":
                    self.close_connection = True
        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#
}

/// A TCP proxy that forwards to a port on 127.0.0.1 and dies (the process exits, so every
/// connection drops and new ones are refused) once the client side has sent more than a given
/// number of bytes: a server that stops in the middle of an upload.
enum TCPProxy {
    static let script = #"""
        import os, socket, sys, threading
        port, upstream, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        sent = [0]
        lock = threading.Lock()
        def pipe(source, target, counted):
            try:
                while True:
                    chunk = source.recv(65536)
                    if not chunk:
                        break
                    if counted:
                        with lock:
                            sent[0] += len(chunk)
                            if sent[0] > limit:
                                print("proxy: stopping after", sent[0], "bytes", flush=True)
                                os._exit(0)
                    target.sendall(chunk)
            except OSError:
                pass
            finally:
                for end in (source, target):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", upstream))
            threading.Thread(target=pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client, False), daemon=True).start()
        """#
}

/// An S3 endpoint that refuses every request with 403 AccessDenied, as a bucket policy that
/// denies this client would. It prints one line per request.
enum ForbiddenS3 {
    static let script = #"""
        import sys
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        port = int(sys.argv[1])
        body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args):
                pass
            def refuse(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                print(self.command, self.path, 403, flush=True)
            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = refuse
        ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
        """#
}
