"""Writing files people keep: never overwrite without force, never leave a half-written file."""

from contextlib import contextmanager
import os
import tempfile

from cnncalc.errors import CnncalcError


def check_output(path, force=False):
    """Refuse an existing file (unless force) and a missing or read-only folder, before any work is done."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CnncalcError(f"Cannot write {path}: it is a folder. Expected a file name")
    if os.path.exists(path) and not force:
        raise CnncalcError(f"{path} already exists. Expected a new file name. Use --force to overwrite it")
    if not os.path.isdir(folder):
        raise CnncalcError(f"Cannot write {path}: folder {folder} does not exist. Expected an existing folder")
    if not os.access(folder, os.W_OK):
        raise CnncalcError(f"Cannot write {path}: folder {folder} is not writable. Expected a folder you can write to")
    return path


@contextmanager
def atomic_output(path, force=False):
    """Yield a temporary path in the target folder; rename it onto `path` only when the block succeeds."""
    path = check_output(path, force)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".cnncalc-", suffix=suffix, dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a finished file gets the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
