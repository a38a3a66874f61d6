"""Octopoid v1 queue directories: which task files exist and what they hold, kept current by
rescans that re-read only what changed.

Two costs dominate at 100,000 files. The first read is bound by opening and parsing every
file; it is shared with a forked worker that reads part of every dir while this process reads
the DB (the caller starts it before the DB read, ``start``). A warm rescan is bound by one
``stat`` per file; the stats are shared out the same way, and a dir whose listing and stat keys
come back equal to the last pass costs no per-file Python work at all.
"""

from __future__ import annotations

import marshal
import mmap
import os
import pickle
import stat as stat_mod
import struct
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qwarden.core.formats.octopoid.taskfile import TASK_FILE_RE, parse_task_bytes
from qwarden.core.model import Header, ReadProblem, TaskFile
from qwarden.core.safeio import OPEN_FLAGS, read_bounded, within
from qwarden.core.sources.errors import SourceError
from qwarden.core.sources.forkmap import Forked, can_fork, fork_map, usable_cpus

NeedsTrail = Callable[[str, str], bool]  # (task id, queue) -> parse the whole file?
SameId = Callable[[str], str]  # task id -> an equal string already held

# Below these many files a fork costs more than the work it would share out: reading a
# file costs ~20 us, a stat ~2.5 us, a fork ~5 ms.
PARALLEL_READ_MIN = 5_000
PARALLEL_STAT_MIN = 20_000

_STAT_FAILED = -1  # never a hash() value (CPython maps -1 to -2)
_SYMLINK = -3  # a symlink: its target is looked at on every pass, never taken as unchanged


def _key(st: os.stat_result) -> int:
    return hash((st.st_mtime_ns, st.st_size, st.st_ino))


def stat_keys(dir_fd: int, names: list[str]) -> array[int]:
    """One stat key per name (lstat, relative to the dir's descriptor), in order."""
    out = array("q")
    put = out.append
    stat, islnk = os.stat, stat_mod.S_ISLNK
    for name in names:
        try:
            st = stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            put(_STAT_FAILED)
            continue
        put(_SYMLINK if islnk(st.st_mode) else hash((st.st_mtime_ns, st.st_size, st.st_ino)))
    return out


def _workers(total: int) -> int:
    return min(usable_cpus(), 4) if can_fork() and total >= PARALLEL_STAT_MIN else 1


def all_stat_keys(dirs: list[tuple[int, list[str]]]) -> list[array[int]]:
    """``stat_keys`` of each (dir fd, names), split over the usable cores when there are
    many files: each worker takes the same slice of every dir."""
    workers = _workers(sum(len(names) for _, names in dirs))
    if workers == 1:
        return [stat_keys(fd, names) for fd, names in dirs]

    def bounds(n: int, w: int) -> tuple[int, int]:
        return n * w // workers, n * (w + 1) // workers

    def part(w: int) -> bytes:
        out = array("q")
        for fd, names in dirs:
            lo, hi = bounds(len(names), w)
            out.extend(stat_keys(fd, names[lo:hi]))
        return out.tobytes()

    result: list[array[int]] = [array("q") for _ in dirs]
    for w, data in enumerate(fork_map(part, range(workers))):
        got = array("q")
        got.frombytes(part(w) if data is None else data)  # a failed worker: its share here
        pos = 0
        for (_, names), keys in zip(dirs, result, strict=True):
            lo, hi = bounds(len(names), w)
            keys.extend(got[pos:pos + hi - lo])
            pos += hi - lo
    return result


def relpath_under(root: Path, path: str | os.PathLike[str]) -> str:
    """``path`` relative to the queue root, with forward slashes (as findings name files)."""
    return os.path.relpath(path, root).replace(os.sep, "/")


@dataclass
class FileScan:
    """Result of one pass over the queue dirs (files keyed by relpath)."""

    files: dict[str, TaskFile]
    changed: set[str]  # relpaths added or modified
    removed: set[str]  # relpaths gone
    problems: list[ReadProblem]


@dataclass(frozen=True, slots=True)
class _DirState:
    """A queue dir as the last full pass left it: its listing, each entry's stat key (in
    listing order) and the task files kept from it."""

    listing: str  # the names, NUL-joined: one string, not 100,000 (a name holds no NUL)
    keys: array[int]
    rels: list[str]


@dataclass(eq=False)
class _Listed:
    queue: str
    path: str
    fd: int
    names: list[str] | None  # None: not listed ahead (read while streaming the dir)
    cut: int = -1  # a started cold pass: names[cut:] are the worker's share


@dataclass
class _Visit:
    """What visiting some names of one dir gave (what a dir state is made of)."""

    keys: array[int] = field(default_factory=lambda: array("q"))
    rels: list[str] = field(default_factory=list)
    clean: bool = True  # every entry stat'ed, read and kept: the dir may take the fast path


@dataclass
class ColdStart:
    """A first pass begun before the DB is read: the dirs are listed and a worker is already
    reading its share of every dir. ``QueueFiles.scan(started=...)`` finishes it; ``close``
    gives it up (closes the dirs, stops the worker)."""

    listed: list[_Listed]
    problems: list[ReadProblem]
    worker: Forked | None = None
    progress: mmap.mmap | None = None  # the worker's count of files read, shared
    began: float = field(default_factory=time.monotonic)

    def worker_read(self) -> int:
        progress = self.progress
        if progress is None:
            return 0
        try:  # (a console asks from its own thread: the pass may be closing it right now)
            return int(struct.unpack_from("q", progress)[0])
        except ValueError:
            return 0

    def close(self) -> None:
        if self.worker is not None:
            self.worker.abandon()
            self.worker = None
        for d in self.listed:
            if d.fd >= 0:
                os.close(d.fd)
                d.fd = -1
        self.listed = []  # (100,000 names need not outlive the pass)
        if self.progress is not None:
            self.progress.close()
            self.progress = None


class QueueFiles:
    """The task files under ``shared/queue/<queue>/``, by relpath. Never writes."""

    def __init__(self, root: Path, queues: tuple[str, ...], max_file_bytes: int,
                 keep_stats: bool = True) -> None:
        self.root = root
        self.root_real = os.path.realpath(root)
        self.queue_dir = root / "shared" / "queue"
        self.queues = queues
        self.max_file_bytes = max_file_bytes
        self.keep_stats = keep_stats  # False: a one-shot read, nothing to compare with later
        # relpath -> hash of (mtime_ns, size, ino): one int per file, not a 3-tuple of ints
        self._stats: dict[str, int] = {}
        self._files: dict[str, TaskFile] = {}
        self._dirs: dict[str, _DirState] = {}  # queue -> its last full pass (keep_stats only)
        self._read_here = 0
        self._started: ColdStart | None = None

    @property
    def files(self) -> dict[str, TaskFile]:
        return self._files

    @property
    def files_read(self) -> int:
        """Files read by the pass in progress (or the last one), the worker's included."""
        started = self._started
        return self._read_here + (started.worker_read() if started is not None else 0)

    def forget(self) -> None:
        """Drop what the last scan read (a one-shot reader whose files are held elsewhere)."""
        self._files = {}
        self._stats = {}
        self._dirs = {}

    def rel(self, path: str | os.PathLike[str]) -> str:
        return relpath_under(self.root, path)

    # -- listing -------------------------------------------------------------
    def _list(self, ahead: Callable[[str], bool]) -> tuple[list[_Listed], list[ReadProblem]]:
        """Open every queue dir; list now the ones ``ahead`` names."""
        problems: list[ReadProblem] = []
        if not self.queue_dir.is_dir():
            raise SourceError(f"{self.queue_dir}: queue directory missing")
        try:
            qentries = list(os.scandir(self.queue_dir))
        except OSError as exc:
            raise SourceError(f"{self.queue_dir}: cannot list: {exc.strerror}") from None
        listed: list[_Listed] = []
        try:
            for qe in qentries:
                if qe.name not in self.queues:
                    continue
                if qe.is_symlink() and not within(self.root_real, qe.path):
                    problems.append(ReadProblem(self.rel(qe.path),
                                                "queue dir is a symlink out of the root; "
                                                "skipped"))
                    continue
                if not qe.is_dir():
                    continue
                try:
                    fd = os.open(qe.path, os.O_RDONLY | os.O_DIRECTORY)
                except OSError as exc:
                    problems.append(ReadProblem(self.rel(qe.path),
                                                f"cannot list: {exc.strerror}"))
                    continue
                names = None
                if ahead(qe.name):
                    try:
                        names = os.listdir(fd)
                    except OSError as exc:
                        os.close(fd)
                        problems.append(ReadProblem(self.rel(qe.path),
                                                    f"cannot list: {exc.strerror}"))
                        continue
                listed.append(_Listed(qe.name, qe.path, fd, names))
        except BaseException:
            for d in listed:
                os.close(d.fd)
            raise
        return listed, problems

    def start(self) -> ColdStart | None:
        """Begin a first pass before the DB is read, when it is big enough to share: every
        dir is listed and a forked worker reads the tail of each. None: scan as usual."""
        if self._dirs or self._files or not can_fork() or usable_cpus() < 2:
            return None
        listed, problems = self._list(lambda q: True)
        started = ColdStart(listed, problems)
        total = sum(len(d.names or ()) for d in listed)
        if total < PARALLEL_READ_MIN:
            return started
        for d in listed:
            # the worker takes the larger part: this process reads the DB first (measured at
            # 100k files, 36% here ends both parts together)
            d.cut = len(d.names or ()) * 9 // 25
        started.progress = mmap.mmap(-1, 8)
        started.worker = Forked(lambda: self._worker_share(started))
        self._read_here = 0
        self._started = started  # its progress counts from now (files_read)
        return started

    # -- scanning ------------------------------------------------------------
    def scan(self, needs_trail: NeedsTrail | None = None, same_id: SameId | None = None,
             started: ColdStart | None = None) -> FileScan:
        """Walk every queue dir; re-read only what changed since the last scan.
        ``needs_trail(task_id, queue) -> bool`` says which files must be parsed fully even
        without trail markers (default: all of them). ``same_id(task_id) -> str`` may hand
        back an equal string already held (the DB row's), so ids are not stored twice."""
        seen: set[str] = set()
        # dirs exactly as the last pass left them: their files count as seen without being
        # put in ``seen`` (at 100k files a warm pass would build a 4 MB set for nothing)
        unchanged: list[_DirState] = []
        changed: set[str] = set()
        self._read_here = 0
        if started is None:
            started = ColdStart(*self._list(lambda q: q in self._dirs))
        self._started = started
        problems = started.problems
        scanned = {d.queue for d in started.listed}
        try:
            # the stat keys of dirs a previous pass knows, up front and on every core (a
            # first pass stats each file as it reads it)
            ahead = [d for d in started.listed
                     if d.names is not None and d.cut < 0 and d.queue in self._dirs]
            keys = iter(all_stat_keys([(d.fd, d.names or []) for d in ahead]))
            mine: dict[str, _Visit] = {}  # of dirs shared with a worker: this process's part
            for d in started.listed:
                if d.cut >= 0:
                    visit = self._visit_dir(d, (d.names or [])[:d.cut], None, needs_trail,
                                            same_id, self._files, self._stats, seen, changed,
                                            problems)
                    if visit is not None:
                        mine[d.queue] = visit
                    continue
                names = d.names
                dir_keys = next(keys) if d in ahead else None
                prev = self._dirs.get(d.queue)
                if (prev is not None and names is not None and dir_keys is not None
                        and prev.keys == dir_keys and prev.listing == "\0".join(names)):
                    unchanged.append(prev)  # the whole dir is as the last pass left it
                    continue
                visit = self._visit_dir(d, names, dir_keys, needs_trail, same_id,
                                        self._files, self._stats, seen, changed, problems)
                self._remember(d, visit)
            if mine:
                self._finish_shared(started, mine, needs_trail, same_id, seen, changed,
                                    problems)
        finally:
            self._read_here = self.files_read
            started.close()
            self._started = None
        for q in set(self._dirs) - scanned:
            del self._dirs[q]  # a queue dir gone (or unreadable) starts afresh if it returns
        # (what was seen is always kept: equal sizes mean nothing is gone)
        n_seen = len(seen) + sum(len(kept.rels) for kept in unchanged)
        removed: set[str] = set()
        if n_seen != len(self._files):
            removed = set(self._files) - seen
            for kept in unchanged:
                removed.difference_update(kept.rels)
        for rel in removed:
            self._files.pop(rel, None)
            self._stats.pop(rel, None)
        return FileScan(files=self._files, changed=changed, removed=removed, problems=problems)

    def _remember(self, d: _Listed, visit: _Visit | None) -> None:
        names = d.names
        if (self.keep_stats and visit is not None and visit.clean and names is not None
                and len(visit.keys) == len(names)):
            self._dirs[d.queue] = _DirState("\0".join(names), visit.keys, visit.rels)
        else:
            self._dirs.pop(d.queue, None)

    def _visit_dir(self, d: _Listed, names: list[str] | None, keys: array[int] | None,
                   needs_trail: NeedsTrail | None, same_id: SameId | None,
                   files: dict[str, TaskFile], stats: dict[str, int], seen: set[str],
                   changed: set[str], problems: list[ReadProblem],
                   progress: mmap.mmap | None = None) -> _Visit | None:
        """Visit ``names`` of one dir (None: list it now). Each file is lstat'ed relative to
        the dir's descriptor (no path walk per file) unless ``keys`` has its stat key; a file
        whose key is unchanged costs two dict lookups, any other is read. None: the dir could
        not be listed."""
        prefix = f"shared/queue/{d.queue}/"
        if names is None:
            try:
                names = os.listdir(d.fd)
            except OSError as exc:
                problems.append(ReadProblem(prefix.rstrip("/"), f"cannot list: {exc.strerror}"))
                return None
            d.names = names
        keep = self.keep_stats
        visit = _Visit()
        new_keys, rels = visit.keys, visit.rels
        reported = len(problems)
        fd, path, queue = d.fd, d.path, d.queue
        stat, islnk = os.stat, stat_mod.S_ISLNK
        for i, name in enumerate(names):
            rel = prefix + name
            old = stats.get(rel)
            key = keys[i] if keys is not None else _STAT_FAILED
            st = None
            if old is None and TASK_FILE_RE.match(name) is None:
                if keep:  # not a task file, but its stat is part of the dir's keys
                    if key == _STAT_FAILED:
                        try:
                            st = stat(name, dir_fd=fd, follow_symlinks=False)
                            key = _SYMLINK if islnk(st.st_mode) else _key(st)
                        except OSError:
                            pass
                    new_keys.append(key)
                continue
            try:
                if key == _STAT_FAILED:
                    st = stat(name, dir_fd=fd, follow_symlinks=False)
                    key = _SYMLINK if islnk(st.st_mode) else _key(st)
                if key == _SYMLINK:
                    visit.clean = False  # its target can change without its own stat changing
                    if not within(self.root_real, os.path.join(path, name)):
                        problems.append(ReadProblem(
                            rel, "symlink pointing outside the root; not followed"))
                        continue
                    st = stat(name, dir_fd=fd)
                    target_key = _key(st)
                else:
                    target_key = key
            except FileNotFoundError:
                visit.clean = False  # moved since the listing: where it went is seen there
                continue
            except OSError as exc:
                problems.append(ReadProblem(rel, f"cannot stat: {exc.strerror}"))
                visit.clean = False
                continue
            seen.add(rel)
            if keep:
                new_keys.append(key)
            if old == target_key and rel in files:
                rels.append(rel)
                continue
            if st is None:
                try:
                    st = stat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as exc:
                    if not isinstance(exc, FileNotFoundError):  # (moved: seen where it went)
                        problems.append(ReadProblem(rel, f"cannot stat: {exc.strerror}"))
                    seen.discard(rel)
                    visit.clean = False
                    continue
                target_key = _key(st)
                if keep:
                    new_keys[-1] = target_key
            tid = name[5:-3]
            if same_id is not None:
                tid = same_id(tid)
            full = needs_trail is None or needs_trail(tid, queue)
            tf = self.read_task_file(name, tid, queue, rel, st.st_mtime, st.st_size, problems,
                                     full, dir_fd=fd)
            self._read_here += 1
            if progress is not None and not self._read_here & 255:
                struct.pack_into("q", progress, 0, self._read_here)
            if tf is None:
                stats.pop(rel, None)
                files.pop(rel, None)
                seen.discard(rel)
                visit.clean = False
                continue
            if len(problems) != reported:
                visit.clean = False  # what could not be read is retried (and reported) each pass
            if keep:
                stats[rel] = target_key
                rels.append(rel)
            files[rel] = tf
            changed.add(rel)
        return visit

    # -- a first pass shared with a forked worker ----------------------------
    def _worker_share(self, started: ColdStart) -> bytes:
        """Runs in the worker: read the tail of every dir, header only where the bytes allow
        (the DB is not read yet, so which files need their trail is decided afterwards)."""
        files: dict[str, TaskFile] = {}
        stats: dict[str, int] = {}
        problems: list[ReadProblem] = []
        dirs = []
        self._read_here = 0
        for d in started.listed:
            names = (d.names or [])[d.cut:]
            visit = self._visit_dir(d, names, None, _header_only, None, files, stats, set(),
                                    set(), problems, started.progress)
            assert visit is not None
            dirs.append((visit.keys.tobytes(), visit.clean))
        if started.progress is not None:
            struct.pack_into("q", started.progress, 0, self._read_here)
        rows: list[tuple[object, ...]] = []
        whole = []
        for rel, tf in files.items():
            if (not tf.trail_complete and tf.parseable and not tf.is_stub and not tf.trail
                    and not tf.errors and not tf.problem and isinstance(tf.header, Header)):
                # most files: plain values, which marshal moves far faster than pickle
                keys_, values = tf.header.parts()
                rows.append((tf.task_id, tf.queue, tf.mtime, tf.size, tf.title, keys_, values,
                             tf.truncated, stats.get(rel, 0)))
            else:
                whole.append((rel, tf, stats.get(rel, 0)))
        # framed: the rest pickled, then the rows marshalled a few thousand at a time (the
        # reader decodes them piece by piece, never all at once beside the files they make)
        frames = [pickle.dumps((whole, problems, dirs), protocol=pickle.HIGHEST_PROTOCOL)]
        frames += [marshal.dumps(rows[i:i + _ROWS_PER_FRAME])
                   for i in range(0, len(rows), _ROWS_PER_FRAME)]
        return b"".join(len(f).to_bytes(8, "little") + f for f in frames)

    def _finish_shared(self, started: ColdStart, mine: dict[str, _Visit],
                       needs_trail: NeedsTrail | None, same_id: SameId | None,
                       seen: set[str], changed: set[str], problems: list[ReadProblem]) -> None:
        """Take the worker's share of each dir (or read it here if the worker failed), give
        the files that turn out to need their trail a full read, remember each dir whole."""
        # (a slow disk slows both parts alike: wait in proportion, give up on a hung worker)
        waited = max(30.0, 4 * (time.monotonic() - started.began))
        data = started.worker.result(waited) if started.worker is not None else None
        started.worker = None
        shared = [d for d in started.listed if d.queue in mine]
        if data is None:  # the worker failed (or could not start): read its share here
            for d in shared:
                tail = self._visit_dir(d, (d.names or [])[d.cut:], None, needs_trail, same_id,
                                       self._files, self._stats, seen, changed, problems)
                self._remember_whole(d, mine[d.queue], tail)
            return
        frames = _frames(data)
        whole, worker_problems, dirs = pickle.loads(next(frames))
        problems.extend(worker_problems)
        files, stats, keep = self._files, self._stats, self.keep_stats
        same = same_id if same_id is not None else _same
        refull: list[tuple[str, TaskFile]] = []
        got: list[str] = []  # relpaths, added to seen and changed in one go
        # each dir's relpaths, for its state (the very strings keying the files: no copies)
        rels_of: dict[str, list[str]] = {d.queue: [] for d in shared}
        rows = (row for frame in frames for row in marshal.loads(frame))
        header, add, wants = Header.from_parts, got.append, needs_trail or _whole
        for (tid, queue, mtime, size, title, hkeys, hvalues, truncated, key) in rows:
            tid = same(tid)
            rel = f"shared/queue/{queue}/TASK-{tid}.md"
            files[rel] = tf = TaskFile(tid, queue, mtime, size, True, False, title,
                                       header(hkeys, hvalues), (), (), truncated, "", False)
            add(rel)
            if keep:
                stats[rel] = key
                rels_of[queue].append(rel)
            if wants(tid, queue):
                refull.append((rel, tf))
        for rel, tf, key in whole:
            files[rel] = tf
            add(rel)
            if keep:
                stats[rel] = key
                rels_of[tf.queue].append(rel)
            if not tf.trail_complete and (needs_trail is None
                                          or needs_trail(same(tf.task_id), tf.queue)):
                refull.append((rel, tf))
        seen.update(got)
        changed.update(got)
        for rel, tf in refull:  # the DB says these need their trail: read them whole
            full = self.read_task_file(str(self.root / rel), tf.task_id, tf.queue, rel,
                                       tf.mtime, tf.size, problems, True)
            if full is not None:
                files[rel] = full
        for d, (keys_data, clean) in zip(started.listed, dirs, strict=True):
            if d.queue not in mine:
                continue
            tail = _Visit(array("q"), rels_of[d.queue], clean)
            tail.keys.frombytes(keys_data)
            self._remember_whole(d, mine[d.queue], tail)

    def _remember_whole(self, d: _Listed, head: _Visit, tail: _Visit | None) -> None:
        """A dir read in two parts: remember it as one."""
        if tail is None:
            self._dirs.pop(d.queue, None)
            return
        keys = array("q", head.keys)
        keys.extend(tail.keys)
        self._remember(d, _Visit(keys, head.rels + tail.rels, head.clean and tail.clean))

    # -- one file --------------------------------------------------------------
    def read_one(self, rel: str, full: bool = True) -> tuple[TaskFile | None, list[ReadProblem]]:
        """Re-read one queue file after a watch event (None: it is gone)."""
        problems: list[ReadProblem] = []
        parts = rel.split("/")
        if len(parts) != 4 or parts[:2] != ["shared", "queue"] or parts[2] not in self.queues:
            return None, problems
        m = TASK_FILE_RE.match(parts[3])
        if m is None:
            return None, problems
        queue = parts[2]
        path = self.root / rel
        try:
            st = os.lstat(path)
            if stat_mod.S_ISLNK(st.st_mode):
                if not within(self.root_real, str(path)):
                    problems.append(ReadProblem(rel, "symlink pointing outside the root; "
                                                     "not followed"))
                    self._forget_file(rel, queue)
                    return None, problems
                st = os.stat(path)
        except FileNotFoundError:
            self._forget_file(rel, queue)
            return None, problems
        except OSError as exc:
            problems.append(ReadProblem(rel, f"cannot stat: {exc.strerror}"))
            self._dirs.pop(queue, None)
            return None, problems
        tf = self.read_task_file(str(path), m.group(1), queue, rel, st.st_mtime, st.st_size,
                                 problems, full)
        if tf is None:
            self._forget_file(rel, queue)
            return None, problems
        key = _key(st)
        if problems or rel not in self._files or self._stats.get(rel) != key:
            # the dir is no longer as its last full pass left it: that pass must look again
            self._dirs.pop(queue, None)
        if self.keep_stats:
            self._stats[rel] = key
        self._files[rel] = tf
        return tf, problems

    def _forget_file(self, rel: str, queue: str) -> None:
        self._files.pop(rel, None)
        self._stats.pop(rel, None)
        self._dirs.pop(queue, None)

    def read_task_file(self, path: str, task_id: str, queue: str, rel: str, mtime: float,
                       size: int, problems: list[ReadProblem], full: bool = True,
                       dir_fd: int | None = None) -> TaskFile | None:
        """``dir_fd``: ``path`` is a name in that dir (the scan's open dir: no path walk
        from the root per file, a third of the cost of opening one)."""
        limit = self.max_file_bytes
        tail = b""
        try:
            fd = os.open(path, OPEN_FLAGS, dir_fd=dir_fd)  # a FIFO must not hang the scan
            try:
                data, tail = read_bounded(fd, size, limit)
            finally:
                os.close(fd)
            truncated = len(data) > limit
            if truncated:
                data = data[:limit]
        except FileNotFoundError:
            return None  # moved between listing and reading: the watcher will see it
        except IsADirectoryError:
            problems.append(ReadProblem(rel, "is a directory, not a task file"))
            return None
        except OSError as exc:
            problems.append(ReadProblem(rel, f"cannot read: {exc.strerror}"))
            return TaskFile(task_id=task_id, queue=queue, mtime=mtime, size=size,
                            parseable=False, problem=f"unreadable: {exc.strerror}")
        return parse_task_bytes(data, task_id, queue, mtime, size, truncated, tail, full)


_ROWS_PER_FRAME = 4096


def _frames(data: memoryview) -> Iterator[memoryview]:
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        yield data[pos + 8:pos + 8 + n]
        pos += 8 + n


def _header_only(task_id: str, queue: str) -> bool:
    return False


def _whole(task_id: str, queue: str) -> bool:
    return True


def _same(task_id: str) -> str:
    return task_id
