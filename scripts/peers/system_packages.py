"""Install a server program through the system package manager when the machine lacks it.

CI machines start bare: the suite installs what it needs rather than skipping. Only Debian/Ubuntu's
apt is supported; anywhere else a missing program is a clear error, never a skip.  Test sessions
that run at once (noxfile.py's ``suite``) take turns at apt through a lock file: apt allows one
install at a time.
"""

import fcntl
import os
import shutil
import subprocess
import tempfile

_updated = False


def ensure_command(command: str, apt_packages: list[str], also_look_in: tuple[str, ...] = ()) -> str:
    """Return the path of ``command``, installing ``apt_packages`` first when it is missing."""
    found = _which(command, also_look_in)
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError(f"{command} is not installed and this machine has no apt-get; install {apt_packages}")
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise RuntimeError(f"{command} is not installed and installing {apt_packages} needs root")
    with open(os.path.join(tempfile.gettempdir(), "rq-gevent-tests-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _which(command, also_look_in)  # another session may have installed it meanwhile
        if found:
            return found
        _apt_install(apt_packages)
    found = _which(command, also_look_in)
    if not found:
        raise RuntimeError(f"installed {apt_packages} but {command} is still not found")
    return found


def ensure_php_extension(php: str, extension: str, apt_packages: list[str]) -> None:
    """Make ``php`` load ``extension`` (``php -m``), installing ``apt_packages`` first when it does not."""
    if _php_has(php, extension):
        return
    if not shutil.which("apt-get"):
        raise RuntimeError(f"PHP lacks {extension} and this machine has no apt-get; install {apt_packages}")
    with open(os.path.join(tempfile.gettempdir(), "rq-gevent-tests-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _php_has(php, extension):
            _apt_install(apt_packages)
    if not _php_has(php, extension):
        raise RuntimeError(f"installed {apt_packages} but PHP still lacks {extension}")


def _php_has(php: str, extension: str) -> bool:
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout
    return extension.lower() in {line.strip().lower() for line in modules.splitlines()}


def _apt_install(apt_packages: list[str]) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    global _updated
    if not _updated:
        subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        _updated = True
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *apt_packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _which(command: str, also_look_in: tuple[str, ...]) -> str | None:
    return shutil.which(command) or shutil.which(command, path=os.pathsep.join(also_look_in))
