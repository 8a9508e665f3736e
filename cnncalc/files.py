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
    if os.path.lexists(path) and not force:
        raise CnncalcError(f"{path} already exists. Expected a new file name. Use --force to overwrite it")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CnncalcError(f"Cannot write {path}: {folder} is a file, not a folder. Expected an existing folder")
    if not os.path.isdir(folder):
        raise CnncalcError(f"Cannot write {path}: folder {folder} does not exist. Expected an existing folder")
    if not os.access(folder, os.W_OK):
        raise CnncalcError(f"Cannot write {path}: folder {folder} is not writable. Expected a folder you can write to")
    return path


@contextmanager
def atomic_output(path, force=False):
    """Yield a temporary path in the target folder; rename it onto `path` only when the block succeeds.

    Whatever stops the block (an error, Ctrl-C) removes the temporary file, so an interrupted run
    leaves nothing half-written and the file that was there before is untouched. A failure of the
    disk (read-only, full) is a CnncalcError naming the path.
    """
    path = check_output(path, force)
    suffix = os.path.splitext(path)[1]
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cnncalc-", suffix=suffix, dir=folder)
    except OSError as e:
        raise CnncalcError(f"Cannot write {path}: {e.strerror or e}. Expected a folder you can write to. Received {folder}") from None
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a finished file gets the usual permissions
        if not force and os.path.lexists(path):  # appeared while we wrote: still never overwrite without force
            raise CnncalcError(f"{path} already exists. Expected a new file name. Use --force to overwrite it")
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        # the disk is full or read-only: an OSError, or XlsxWriter's FileCreateError raised while handling one
        wrapped = type(e).__module__.startswith("xlsxwriter") and isinstance(e.__context__, OSError)
        cause = e if isinstance(e, OSError) else e.__context__ if wrapped else None
        if cause is not None:
            raise CnncalcError(f"Cannot write {path}: {cause.strerror or cause}. Expected a writable folder with free space") from e
        raise
