#!/usr/bin/python3
"""Run one testbed server under a small supervisor that reaps.

Usage: tbrun.py PIDFILE NAME -- CMD [ARG...]

Starts CMD in a new session, writes its PID to PIDFILE and stays as its
parent until it exits.  The supervisor is a child subreaper, so processes
that CMD leaves behind (Postfix's daemons when master exits) are reaped
here instead of piling up as zombies under an init that may not reap.
SIGTERM, SIGINT and SIGHUP sent to the supervisor are passed on to CMD.
When CMD exits, one line saying how is written to stderr, which the
testbed points at the server's log.  The testbed signals CMD by the PID
in PIDFILE; the supervisor is only a parent.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def describe(status):
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return f"killed by signal {sig} ({signal.Signals(sig).name})"
    return f"ended with wait status {status}"


def main(argv):
    if len(argv) < 5 or argv[3] != "--":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    pidfile, name, cmd = argv[1], argv[2], argv[4:]

    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    child = os.fork()
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"testbed: cannot run {cmd[0]}: {e}", file=sys.stderr)
            os._exit(127)

    def forward(sig, _frame):
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    tmp = f"{pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{child}\n")
    os.rename(tmp, pidfile)

    # Reap until CMD and everything it left behind are gone.
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            print(f"--- testbed: {name} (pid {child}) {describe(status)} {stamp}",
                  file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
