#!/usr/bin/python3
"""A stand-in for the smtpgw master, for the smtpgwctl CLI tests.

It keeps the pidfile and the status file exactly as the real master does
(format in daemon/status.h) and answers SIGHUP the way the real master
does - re-checks its -c file with the real `smtpgw -t` and refuses
listen-port/queue/user changes - but without netfilter, listeners or
root, so `smtpgwctl apply` and `status` can be tested anywhere.

Usage: fake_smtpgw.py --bin SMTPGW -c CONF -p PIDFILE [-s STATUSFILE]

Control files next to PIDFILE, for the tests:
  reject-next   the next reload is rejected (its text is the reason)
  mute          the status file is no longer rewritten (reloads and SIGUSR2
                are handled but never reported)
The configuration of the last reload that took effect is copied to
PIDFILE's directory as "loaded.conf".
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

RESTART_KEYS = ("listen-port", "queue", "user")


def effective_globals(binary, conf):
    r = subprocess.run([binary, "-D", "-c", conf], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    out, in_global = {}, False
    for line in r.stdout.splitlines():
        if line.startswith("["):
            in_global = line.strip() == "[global]"
        elif in_global and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


class Master:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.dirname(os.path.abspath(a.p))
        self.st = {
            "format": "1", "seq": "0", "updated": "0", "pid": str(os.getpid()),
            "version": "0.1.0-fake", "config": a.c, "started": str(int(time.time())),
            "generation": "1", "reloads": "0", "reload-result": "none",
            "reload-error": "", "reload-time": "0", "classifier-pid": str(os.getpid()),
            "classifier": "running", "signer-pid": str(os.getpid()), "signer": "running",
            "workers": "2", "workers-expected": "2",
            "workers-draining": "0", "worker-pids": "1 2", "sessions": "0",
            "child-deaths": "0", "respawns": "0",
        }
        self.globals = effective_globals(a.bin, a.c)
        if self.globals is None:
            sys.exit(f"fake smtpgw: {a.c} does not load")
        shutil.copy(a.c, os.path.join(self.dir, "loaded.conf"))
        self.hup = self.usr2 = self.stop = False

    def write_status(self):
        if not self.a.s:
            return
        self.st["seq"] = str(int(self.st["seq"]) + 1)
        self.st["updated"] = str(int(time.time()))
        tmp = self.a.s + ".tmp"
        with open(tmp, "w") as f:
            for k, v in self.st.items():
                f.write(f"{k}={v}\n")
        os.rename(tmp, self.a.s)

    def reload(self):
        st = self.st
        st["reloads"] = str(int(st["reloads"]) + 1)
        st["reload-time"] = str(int(time.time()))
        reject = os.path.join(self.dir, "reject-next")
        r = subprocess.run([self.a.bin, "-t", "-c", self.a.c], capture_output=True, text=True)
        new = effective_globals(self.a.bin, self.a.c)
        if os.path.exists(reject):
            with open(reject) as f:
                why = f.read().strip() or "rejected by the test"
            os.unlink(reject)
            st["reload-result"], st["reload-error"] = "rejected", why
        elif r.returncode != 0 or new is None:
            st["reload-result"] = "rejected"
            st["reload-error"] = r.stderr.strip().replace("\n", " ")
        elif any(new.get(k) != self.globals.get(k) for k in RESTART_KEYS):
            st["reload-result"] = "rejected"
            st["reload-error"] = "listen-port, queue and user change only on restart"
        else:
            st["reload-result"], st["reload-error"] = "ok", ""
            st["generation"] = str(int(st["generation"]) + 1)
            shutil.copy(self.a.c, os.path.join(self.dir, "loaded.conf"))
        if not os.path.exists(os.path.join(self.dir, "mute")):
            self.write_status()

    def run(self):
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "hup", True))
        signal.signal(signal.SIGUSR2, lambda *_: setattr(self, "usr2", True))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop", True))
        self.write_status()
        tmp = self.a.p + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.rename(tmp, self.a.p)
        while not self.stop:
            if self.hup:
                self.hup = False
                self.reload()
            if self.usr2:
                self.usr2 = False
                if not os.path.exists(os.path.join(self.dir, "mute")):
                    self.write_status()
            time.sleep(0.02)
        for path in (self.a.p, self.a.s):
            if path and os.path.exists(path):
                os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("-c", required=True)
    ap.add_argument("-p", required=True)
    ap.add_argument("-s")
    Master(ap.parse_args()).run()


if __name__ == "__main__":
    main()
