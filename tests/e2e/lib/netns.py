"""Code that runs inside a testbed namespace: setns(2) on the namespace's
file for a block, then back.  Sockets made inside stay there for good,
so a test drives them from its own process."""

import contextlib
import ctypes
import os
import socket


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(path):
    """Run the body with this thread in the network namespace at path.
    Sockets made inside stay in that namespace for good."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(str(path), os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {path}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(own)


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET
