"""The files a user names: inputs opened safely, outputs never overwritten without force nor left half-written.

Reading: `check_input` refuses, before anything opens the file, what is not an existing, readable, regular file
of a sane size (a named pipe can wait forever for a writer; /dev/zero never ends); `open_input` and `read_input`
open it without blocking and read at most the limit. Writing: `check_output` (and `check_distinct` for the
several outputs of one command) refuses a bad target before any work is done; `atomic_output` writes it.
Missing folders of an output are made when it is written (and removed again if the write fails).
"""

from contextlib import contextmanager
import os
import stat
import tempfile

from cnncalc import guards
from cnncalc.errors import CnncalcError, quoted

NOT_FILES = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (reading it can wait forever)"),
             (stat.S_ISCHR, "a device (reading it may never end)"), (stat.S_ISBLK, "a device (reading it may never end)"),
             (stat.S_ISSOCK, "a socket"))


def _kind(mode):
    """What a path that is not a regular file is, in words: 'a folder', 'a named pipe ...'."""
    return next((kind for test, kind in NOT_FILES if test(mode)), "not a regular file")


# ---------------------------------------------------------------- reading


def check_input(path, expected, max_bytes=None):
    """`path` as a str, once it is known to be an existing, readable, non-empty regular file of at most
    `max_bytes` (default guards.MAX_FILE_BYTES); anything else is one line naming the file and `expected`.

    expected: what the command wants there, e.g. "an .xlsx workbook written by cnncalc".
    """
    path = os.fspath(path)
    limit = guards.MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CnncalcError(f"{quoted(path)} does not exist. Expected {expected}") from None
    except (OSError, ValueError) as e:  # a name too long, a loop of links, a NUL in the name
        raise CnncalcError(f"Cannot read {quoted(path)}: {_reason(e)}. Expected {expected}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CnncalcError(f"Cannot read {quoted(path)}: it is {_kind(st.st_mode)}, not a file. Expected {expected}")
    if st.st_size == 0:
        raise CnncalcError(f"{quoted(path)} is empty. Expected {expected}")
    if st.st_size > limit:
        raise guards.too_large(quoted(path), limit, st.st_size, " bytes")
    if not os.access(path, os.R_OK):
        raise CnncalcError(f"Cannot read {quoted(path)}: permission denied. Expected {expected}")
    return path


def open_input(path, expected, max_bytes=None):
    """The checked input file opened for binary reading. It is opened without waiting (a file swapped for a pipe
    after the check cannot hang) and checked again through the open handle."""
    path = check_input(path, expected, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise CnncalcError(f"Cannot read {quoted(path)}: {_reason(e)}. Expected {expected}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CnncalcError(f"Cannot read {quoted(path)}: it is {_kind(mode)}, not a file. Expected {expected}")
    if getattr(os, "O_NONBLOCK", 0):
        os.set_blocking(fd, True)
    f = os.fdopen(fd, "rb")
    f.raw.name = path  # what a library's message calls the file (else "<_io.BufferedReader name=3>")
    return f


def read_input(path, expected, max_bytes=None):
    """The bytes of a checked input file, never more than `max_bytes` (a file that grew since is refused)."""
    limit = guards.MAX_FILE_BYTES if max_bytes is None else max_bytes
    with open_input(path, expected, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise CnncalcError(f"Cannot read {quoted(path)}: {_reason(e)}. Expected {expected}") from None
    if len(data) > limit:
        raise guards.too_large(quoted(path), limit, len(data), " bytes")
    return data


def _reason(e):
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


# ---------------------------------------------------------------- writing


def check_output(path, force=False, suffix=None):
    """Refuse, before any work is done: a name not ending in `suffix` (e.g. ".xlsx"), an existing file (unless
    force; never anything but a regular file), and a place where no file can be written. A missing folder is
    fine when it can be made: atomic_output makes it."""
    path = os.fspath(path)
    if suffix is not None:
        ext = os.path.splitext(path)[1]
        if ext.lower() != suffix or os.path.basename(path).lower() == suffix:
            raise CnncalcError(f"Cannot write {quoted(path)}: the name does not end in {suffix}. Expected a file name ending in {suffix}. "
                               f"Received {quoted(ext) if ext else 'a name without a suffix'}")
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) and os.path.exists(path):
            st = os.stat(path)  # a link is judged by what it points to; a dangling one is replaced (with force)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as e:  # a name too long, a file where a folder should be, a NUL in the name
        raise CnncalcError(f"Cannot write {quoted(path)}: {_reason(e)}. Expected a file name you can write") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise CnncalcError(f"Cannot write {quoted(path)}: it is a folder. Expected a file name")
    if st is not None and not force:
        raise CnncalcError(f"{quoted(path)} already exists. Expected a new file name. Use --force to overwrite it")
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise CnncalcError(f"Cannot write over {quoted(path)}: it is {_kind(st.st_mode)}. Expected a regular file to replace")
    check_folder(os.path.dirname(os.path.abspath(path)), f"Cannot write {quoted(path)}")
    return path


def check_folder(folder, context=None):
    """Refuse an output folder that is a file, or that cannot be made or written into; a missing one is fine."""
    folder = os.fspath(folder)
    context = context or f"Cannot write into {quoted(folder)}"
    existing = os.path.abspath(folder)
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "it is" if existing == os.path.abspath(folder) else f"{quoted(existing)} is"
        raise CnncalcError(f"{context}: {where} a file, not a folder. Expected a folder, or a name where one can be made")
    if not os.access(existing, os.W_OK):
        raise CnncalcError(f"{context}: folder {quoted(existing)} is not writable. Expected a folder you can write to")
    return folder


def check_distinct(outputs, inputs=()):
    """Refuse two outputs of one command that are the same file, and an output that is one of its inputs."""
    seen = {}
    for path in outputs:
        key = _identity(path)
        if key in seen:
            raise CnncalcError(f"{quoted(path)} is named twice as an output (also as {quoted(seen[key])}). "
                               "Expected a different file for each output")
        seen[key] = path
    for path in inputs:
        key = _identity(path)
        if key in seen:
            raise CnncalcError(f"Cannot write {quoted(seen[key])}: it is also an input of this command ({quoted(path)}). "
                               "Expected an output other than the files read")
    return list(outputs)


def _identity(path):
    """The same for two names of one file: (device, inode) of an existing file, else the resolved path."""
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except (OSError, ValueError):
        return os.path.normcase(os.path.realpath(path))


def _make_folders(folder):
    """Make `folder` and any missing parents; return the folders made, outermost first."""
    made = []
    while not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        made.append(folder)
        folder = os.path.dirname(folder)
    for f in reversed(made):
        os.mkdir(f)
    return made[::-1]


@contextmanager
def atomic_output(path, force=False):
    """Yield a temporary path in the target folder; rename it onto `path` only when the block succeeds.

    Whatever stops the block (an error, Ctrl-C) removes the temporary file and any folder made for it, so an
    interrupted run leaves nothing half-written and the file that was there before is untouched. A failure
    of the disk (read-only, full) is a CnncalcError naming the path.
    """
    path = check_output(path, force)
    suffix = os.path.splitext(path)[1]
    folder = os.path.dirname(os.path.abspath(path))
    made, tmp = [], None
    try:
        made = _make_folders(folder)
        fd, tmp = tempfile.mkstemp(prefix=".cnncalc-", suffix=suffix, dir=folder)
        os.close(fd)
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a finished file gets the usual permissions
        if not force and os.path.lexists(path):  # appeared while we wrote: still never overwrite without force
            raise CnncalcError(f"{quoted(path)} already exists. Expected a new file name. Use --force to overwrite it")
        os.replace(tmp, path)
    except BaseException as e:
        for leftover in ([tmp] if tmp else []) + made[::-1]:
            try:
                os.rmdir(leftover) if leftover in made else os.remove(leftover)
            except OSError:
                pass
        # the disk is full or read-only: an OSError, or XlsxWriter's FileCreateError raised while handling one
        wrapped = type(e).__module__.startswith("xlsxwriter") and isinstance(e.__context__, OSError)
        cause = e if isinstance(e, OSError) else e.__context__ if wrapped else None
        if cause is not None:
            raise CnncalcError(f"Cannot write {quoted(path)}: {_reason(cause)}. Expected a writable folder with free space") from e
        raise
