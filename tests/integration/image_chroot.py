"""Run a command in an image's root filesystem the way a container runtime would, where ``podman run`` cannot.

``podman run`` fails in the project's sandbox (crun cannot set RLIMIT_NOFILE without CAP_SYS_RESOURCE), so
tests/integration/test_image.py runs the image this way: ``unshare --mount --propagation private -- python
image_chroot.py SPEC.json``. In that private mount namespace (as root) this script

- bind-mounts the image's root filesystem (``podman image mount``) on ``root`` and remounts it **read-only**
  (Kubernetes' ``readOnlyRootFilesystem``, ``docker run --read-only``),
- mounts a fresh tmpfs on ``/tmp`` (the emptyDir/tmpfs the deployment gives it), a ``/proc`` and a minimal
  ``/dev`` (null, zero, full, random, urandom, tty bound from the host),
- chroots into it, drops to the image's user (``uid:gid``; no supplementary groups), changes to its working
  directory and executes ``argv`` with exactly ``env`` (no variable of the caller leaks in).

Stdlib only: it runs before the image's environment exists. The network namespace is the host's: the process
reaches providers on 127.0.0.1 and its listeners are on the host's loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)  # the host's mount(8)


def prepare(source: Path, root: Path) -> None:
    mount("--bind", str(source), str(root))
    mount("-o", "remount,bind,ro", str(root))
    for name in ("tmp", "proc", "dev"):
        if not (root / name).is_dir():
            raise SystemExit(f"image_chroot: the image has no /{name} to mount on")
    mount("-t", "tmpfs", "-o", "nosuid,nodev,mode=1777,size=64m", "tmpfs", str(root / "tmp"))
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", str(root / "proc"))
    mount("-t", "tmpfs", "-o", "nosuid,noexec,mode=755,size=64k", "tmpfs", str(root / "dev"))
    for device in DEVICES:
        target = root / "dev" / device
        target.touch()
        mount("--bind", f"/dev/{device}", str(target))


def user_ids(root: Path, user: str) -> tuple[int, int]:
    """The image config's ``User`` (``uid[:gid]`` or names, looked up in the image's /etc/passwd and /etc/group);
    empty means root, as with a runtime."""
    name, _, group = (user or "0").partition(":")

    def lookup(value: str, table: str, column: int) -> int:
        if value.isdigit():
            return int(value)
        for line in (root / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == value:
                return int(fields[column])
        raise SystemExit(f"image_chroot: no {value!r} in the image's /etc/{table}")

    uid = lookup(name, "passwd", 2)
    if group:
        return uid, lookup(group, "group", 2)
    if name.isdigit():
        return uid, 0
    return uid, lookup(name, "passwd", 3)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    root = Path(spec["root"])
    prepare(Path(spec["source"]), root)
    uid, gid = user_ids(root, spec["user"])
    os.chroot(root)
    os.chdir(spec.get("cwd") or "/")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    argv: list[str] = spec["argv"]
    env: dict[str, str] = spec["env"]
    os.execvpe(argv[0], argv, env)  # noqa: S606 (the image's own entrypoint, resolved on the image's PATH)


if __name__ == "__main__":
    main(sys.argv[1])
