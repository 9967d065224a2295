"""Debian's nginx as a foreground child of a test: a temporary prefix, a main configuration
around the caller's http-level text, start-up awaited on the listening ports, a JSON access log
read back, and a graceful stop.  tests/proxy/test_nginx.py and tests/lib/tlsup.py build on it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import gd

NGINX = os.environ.get("NGINX_BIN") or shutil.which("nginx") or "/usr/sbin/nginx"


def have_nginx():
    return os.path.exists(NGINX)


class NginxProcess:
    """``start(http, ports)`` writes nginx.conf with ``http`` inside its http block (``{dir}``
    in it is the prefix) and waits until every port accepts.  ``access_log`` and ``error_log``
    are paths in the prefix; the caller's http text points its access_log at the former."""

    def __init__(self, prefix="gatherd-nginx-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o755)           # workers run as nobody: temp paths must be reachable
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.proc = None

    def start(self, http, ports, workers=1, connections=1024, start_timeout=15):
        d = self.dir
        conf = f"""
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http.replace("{dir}", d)}
}}
"""
        path = os.path.join(d, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen(
            [NGINX, "-p", d, "-c", path, "-e", self.error_log, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + start_timeout
        for port in ports:   # wait on the sockets: nginx accepts once it is up
            while True:
                if self.proc.poll() is not None:
                    out = self.proc.stdout.read().decode("utf-8", "replace")
                    raise gd.HarnessError(f"nginx exited {self.proc.returncode}: {out}\n"
                                          f"{self.errors()}\nconfig:\n{conf}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise gd.HarnessError(f"nginx did not accept on {port} within "
                                              f"{start_timeout}s")
                    time.sleep(0.02)

    def errors(self):
        try:
            with open(self.error_log) as f:
                return f.read()
        except OSError:
            return ""

    def access_lines(self):
        """Every JSON line of the access log so far."""
        out = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
        return out

    def wait_access(self, pred, what, timeout=10):
        """The access lines once pred(lines) holds.  nginx writes a request's line in its log
        phase, after the answer has left, so a client that has read the answer can be ahead
        of the log: await the line, never read it once."""
        return gd.wait_until(lambda: (lambda ls: ls if pred(ls) else None)(self.access_lines()),
                             timeout, what)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)       # graceful
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
