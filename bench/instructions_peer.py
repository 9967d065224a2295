#!/usr/bin/env python3
"""Instructions per aggregate request of gatherd and of nginx+Lua doing the same K-way join from
the same upstream nginx, counted by callgrind (issue 16): what each side executes in user space,
which wall-clock runs on 2 shared cores cannot tell apart, and how much of gatherd's is libcurl.

    bench/instructions_peer.py [K ...]     default: 3 20

Each server runs alone under callgrind (gatherd with one worker, nginx with master_process off
and one worker), is sent N and then 3N keep-alive requests by one client, and the difference
over 2N cancels start-up and shutdown. Kernel time is not counted: compare it with the
"user / system" column of bench/run.sh. Needs valgrind and libnginx-mod-http-lua."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (its fixtures, upstream nginx, Lua join and gatherd configuration)

N = int(os.environ.get("INSTR_REQUESTS", "100"))
PORT = bench.GATHERD_PORT  # one server at a time listens here


class NoCounts(Exception):
    """callgrind wrote no counts: the server was killed before it could exit."""


def callgrind(argv, out, n):
    """Runs argv under callgrind, sends it n requests, and returns the per-object instruction
    counts of the whole run ({object file: Ir}, and "total")."""
    vg = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file",  # LuaJIT writes code
          f"--callgrind-out-file={out}"]
    log = open(out + ".log", "w")
    p = bench.PROCS.start(vg + argv, stdout=subprocess.DEVNULL, stderr=log)
    try:
        if not bench.wait_port(PORT, p, timeout=120):
            raise SystemExit(f"instructions_peer: {argv[0]} did not start")
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=120)
        for _ in range(n):  # one keep-alive client: the same sequence of events every run
            c.request("GET", "/agg")
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or b'"errors":[]' not in body:
                raise SystemExit(f"instructions_peer: {argv[0]} answered {r.status} "
                                 f"{body[:120]!r}")
        c.close()
    finally:
        # nginx under valgrind can take the SIGTERM and go back to sleep in epoll_wait until
        # something happens on a socket: a connection now and then wakes it to exit.
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        for _ in range(120):
            try:
                p.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                try:
                    socket.create_connection(("127.0.0.1", PORT), timeout=0.5).close()
                except OSError:
                    pass
        bench.PROCS.stop(p, grace=5)
        log.close()
    ann = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
    total = re.search(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", ann, re.M)
    if total is None:
        raise NoCounts(f"no callgrind totals for {argv[0]} (its log: {out}.log)")
    by = {"total": int(total.group(1).replace(",", ""))}
    for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S+ \[([^\]]+)\]$", ann, re.M):
        obj = os.path.basename(m.group(2))
        by[obj] = by.get(obj, 0) + int(m.group(1).replace(",", ""))
    return by


def counted(argv, out, n):
    """callgrind(), tried up to three times: a server killed before it exits leaves no counts."""
    for _ in range(3):
        try:
            return callgrind(argv, out, n)
        except NoCounts as e:
            print(f"instructions_peer: {e}; again", file=sys.stderr)
    raise SystemExit(f"instructions_peer: no callgrind counts for {argv[0]} in three runs")


def per_request(argv, tmp, name, k):
    a = counted(argv, os.path.join(tmp, f"cg.{name}.{k}.a"), N)
    b = counted(argv, os.path.join(tmp, f"cg.{name}.{k}.b"), 3 * N)
    return {o: (b.get(o, 0) - a.get(o, 0)) / (2 * N) for o in set(a) | set(b)}


def main():
    ks = [int(x) for x in sys.argv[1:]] or [3, 20]
    for tool in ("valgrind", "callgrind_annotate", bench.NGINX):
        if not shutil.which(tool):
            raise SystemExit(f"instructions_peer: {tool} not found (apt-get install valgrind "
                             "nginx libnginx-mod-http-lua)")
    gatherd = os.environ.get("GATHERD_BIN") or os.path.join(bench.ROOT, "build-release", "src",
                                                            "gatherd")
    ndk = bench.nginx_module("ndk_http_module.so")
    lua = bench.nginx_module("ngx_http_lua_module.so")
    if not (ndk and lua):
        raise SystemExit("instructions_peer: libnginx-mod-http-lua is not installed")
    tmp = tempfile.mkdtemp(prefix="gatherd-instr-")
    env = bench.Env(tmp)
    try:
        env.start_upstream()
        for k in ks:
            sc = {"name": f"instr-k{k}", "k": k, "workers": 1}
            d, head = env.nginx_common(f"lua-k{k}", 1, 4096, (ndk, lua))
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w") as f:
                f.write("master_process off;\n" + head
                        + bench.lua_join_http(env.backends(sc), PORT))
            cfg = env.gatherd_config(sc, access_log=False)
            cfg["listen"] = f"127.0.0.1:{PORT}"
            cfg_path = os.path.join(tmp, f"gatherd-k{k}.json")
            with open(cfg_path, "w") as f:
                json.dump(cfg, f)
            lua_i = per_request([bench.NGINX, "-p", d, "-c", conf, "-g", "daemon off;"], tmp,
                                "lua", k)
            gd_i = per_request([gatherd, "--config", cfg_path], tmp, "gatherd", k)
            curl = sum(v for o, v in gd_i.items() if o.startswith("libcurl"))
            print(f"K={k}: nginx+Lua {lua_i['total']:,.0f} instructions/request "
                  f"({lua_i['total'] / k:,.0f} per leg); gatherd {gd_i['total']:,.0f} "
                  f"({gd_i['total'] / k:,.0f} per leg, {gd_i['total'] / lua_i['total']:.2f}x), "
                  f"of which libcurl {curl:,.0f} ({curl / lua_i['total']:.2f}x nginx+Lua's whole)")
            top = sorted(((v, o) for o, v in gd_i.items() if o != "total"), reverse=True)[:6]
            print("  gatherd by object: " + ", ".join(f"{o} {v:,.0f}" for v, o in top))
            top = sorted(((v, o) for o, v in lua_i.items() if o != "total"), reverse=True)[:6]
            print("  nginx+Lua by object: " + ", ".join(f"{o} {v:,.0f}" for v, o in top))
            sys.stdout.flush()
    finally:
        bench.PROCS.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
