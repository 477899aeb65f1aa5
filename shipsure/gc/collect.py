"""What `registry garbage-collect` of a given distribution version deletes: its
mark-and-sweep replayed on the storage, flaws included.

Both versions (registry/storage/garbagecollect.go, v2.8.2 and v3.1.1):

- Mark: walk repositories; in each, every revision link whose manifest exists (link parses,
  `data` present) is enumerated. A revision whose `data` is missing is skipped
  (`ErrBlobUnknown`), so whatever only it referenced is swept: plain GC turns a lost manifest
  into a lost image. With `--delete-untagged` (`-m`) a revision no tag's `current/link`
  names is put on the deletion list and not marked.
- Sweep: remove the listed revisions (and their tag-history entries), then every blob folder
  whose digest was never marked.

v2.8: a marked manifest marks its `References()` one level deep: an index marks its
children's digests, never their config and layers, so `-m` deletes every multi-arch image's
children and their blobs (registry-facts §1). Repositories are found by their `_layers`
folder. A repository with revisions but no `_manifests/tags` folder aborts `-m`
("failed to retrieve tags unknown repository").

v3: marking recurses into each reference that exists as a manifest in the repository; after
marking, listed revisions that something marked are kept. Right after marking a repository,
its `_layers` links whose digest is not marked *so far* are removed (so the order of
repositories matters). A repository without a tags folder is skipped under `-m` (its
untagged revisions are neither marked nor deleted, their blobs are swept). Repositories are
found by their `_manifests` folder; one without a `_layers` folder stops the run.

Any error while marking stops the collector before it deletes anything ("failed to mark:
..."): a malformed or unreadable link, a marked manifest that does not unmarshal, an invalid
repository name. `Prediction.aborted` carries that message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shipsure.gc import golang
from shipsure.gc.tree import MISSING, GCTree
from shipsure.storage import layout
from shipsure.storage.interface import StorageError, StorageLinkOutsideError

VERSIONS = (2, 3)


@dataclass(frozen=True, slots=True)
class ManifestDeletion:
    repository: str
    digest: str
    tags: tuple[str, ...]  # every tag of the repository: their history entries go too


@dataclass
class Prediction:
    """What one collector run deletes. When `aborted` is set, `manifests`, `blobs` and
    `layer_links` hold what it deleted before it stopped (nothing, when marking failed)."""

    version: int
    delete_untagged: bool
    manifests: list[ManifestDeletion] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)
    layer_links: list[tuple[str, str]] = field(default_factory=list)
    marked: set[str] = field(default_factory=set)
    # Revisions the collector skipped because their data is missing.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    aborted: str | None = None
    abort_path: str | None = None  # the storage path behind the abort, when it is one
    # Set when the replay could not read what the collector reads (a link leaving the
    # storage root): what the run would do is unknown; nothing is listed.
    unknown: str | None = None
    unknown_path: str | None = None
    repositories: list[str] = field(default_factory=list)
    marked_count: int = 0  # len(marked), kept when `marked` itself is dropped

    @property
    def manifest_keys(self) -> set[tuple[str, str]]:
        return {(m.repository, m.digest) for m in self.manifests}


class _Abort(Exception):
    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class _Collector:
    def __init__(self, tree: GCTree, version: int, delete_untagged: bool) -> None:
        if version not in VERSIONS:
            raise ValueError(f"registry version {version}: want 2 or 3")
        self.tree = tree
        self.version = version
        self.delete_untagged = delete_untagged
        self.refs: dict[str, list[str] | golang.GoError] = {}
        self.out = Prediction(version, delete_untagged)
        self.pending: list[ManifestDeletion] = []
        self.lookups: dict[str, dict[str, list[str]] | _Abort] = {}

    # --- reads as the collector does them -------------------------------------------------

    def _readlink(self, path: str) -> str | None:
        """The digest of a link, None when absent; aborts on malformed content."""
        raw = self.tree.link(path)
        if raw is None:
            return None
        try:
            return golang.parse_link(raw)
        except golang.GoError as exc:
            raise _Abort(str(exc), path) from None

    def _manifest_exists(self, repository: str, digest: str) -> bool:
        """linkedBlobStatter.Stat: the revision link named by the digest (v2.8 also tries
        the `_layers` link), its target parsed, then the target's `data`. Aborts on a link
        that does not parse."""
        if not golang.is_valid_digest(digest):
            return False
        paths = [layout.revision_link(repository, digest)]
        if self.version == 2:
            paths.append(layout.layer_link(repository, digest))
        for path in paths:
            target = self._readlink(path)
            if target is not None:
                return self.tree.data_state(target) != MISSING
        return False

    def _blob_exists(self, repository: str, digest: str) -> bool:
        if not golang.is_valid_digest(digest):
            return False
        target = self._readlink(layout.layer_link(repository, digest))
        return target is not None and self.tree.data_state(target) != MISSING

    def _references(self, repository: str, digest: str) -> list[str]:
        got = self.refs.get(digest)
        if got is None:
            raw = self.tree.manifest_bytes(digest, keep=True)
            if raw is None:
                got = golang.GoError(f"unknown manifest name={repository} revision={digest}")
            else:
                try:
                    got = golang.references(raw, self.version)
                except golang.GoError as exc:
                    got = exc
            self.refs[digest] = got
        if isinstance(got, golang.GoError):
            raise _Abort(
                f"failed to retrieve manifest for digest {digest}: {got}", layout.blob_data(digest)
            )
        return got

    def _tag_lookup(self, repository: str, digest: str) -> list[str]:
        """tagStore.Lookup: every tag's current link is read (in name order) and must
        parse, whichever digest is asked for."""
        table = self.lookups.get(repository)
        if table is None:
            table = self.lookups[repository] = self._tag_table(repository)
        if isinstance(table, _Abort):
            raise _Abort(f"failed to retrieve tags for digest {digest}: {table}", table.path)
        return table.get(digest, [])

    def _tag_table(self, repository: str) -> dict[str, list[str]] | _Abort:
        got = self.tree.tags(repository)
        table: dict[str, list[str]] = {}
        if got is None:
            return table
        names, current = got
        for name in names:
            raw = current.get(name)
            if raw is None:
                continue
            try:
                tag_digest = golang.parse_link(raw)
            except golang.GoError as exc:
                return _Abort(str(exc), layout.tag_current_link(repository, name))
            table.setdefault(tag_digest, []).append(name)
        return table

    # --- mark -----------------------------------------------------------------------------

    def mark(self) -> None:
        marker = layout.LAYERS_DIR if self.version == 2 else layout.MANIFESTS_DIR
        if self.tree.list_sorted(layout.REPOSITORIES) is None:
            # Observed on 2.8.2 and 3.1.2, with blobs or without: the catalog walk fails.
            raise _Abort(f"filesystem: Path not found: /{layout.REPOSITORIES}", layout.REPOSITORIES)
        self.out.repositories = self.tree.repositories(marker)
        for repository in self.out.repositories:
            try:
                golang.check_repository_name(repository)
            except golang.GoError as exc:
                raise _Abort(str(exc)) from None
            self._mark_repository(repository)
            if self.version == 3:
                self._collect_layer_links(repository)

    def _mark_repository(self, repository: str) -> None:
        base = f"{layout.repository_dir(repository)}/{layout.MANIFESTS_DIR}/revisions"
        for link in self.tree.link_files(base):
            try:
                digest = golang.parse_link(link.raw)
            except golang.GoError as exc:
                raise _Abort(str(exc), link.path) from None
            if not self._manifest_exists(repository, digest):
                self.out.skipped.append((repository, digest))
                continue
            if self.delete_untagged and not self._tag_lookup(repository, digest):
                listed = self.tree.tags(repository)
                if listed is None:
                    if self.version == 2:
                        raise _Abort(
                            "failed to retrieve tags unknown repository: repository name "
                            f"not known to registry: {repository}",
                            layout.tags_dir(repository),
                        )
                    continue  # v3: "manifest tags path of repository ... does not exist"
                self.pending.append(ManifestDeletion(repository, digest, tuple(listed[0])))
                continue
            self.out.marked.add(digest)
            if self.version == 2:
                self.out.marked.update(self._references(repository, digest))
            else:
                self._mark_recursively(repository, digest)

    def _mark_recursively(self, repository: str, digest: str) -> None:
        # v3 markManifestReferences: a reference already marked is not visited again, even
        # when it was marked in another repository where it was not a manifest.
        stack = [digest]
        while stack:
            current = stack.pop()
            refs = self._references(repository, current)
            follow = []
            for ref in refs:
                if ref in self.out.marked:
                    continue
                self.out.marked.add(ref)
                if self._manifest_exists_quiet(repository, ref):
                    follow.append(ref)
            # Depth first in reference order, as the recursive Go code visits them.
            stack.extend(reversed(follow))

    def _manifest_exists_quiet(self, repository: str, digest: str) -> bool:
        # manifestService.Exists: its error is ignored (`ok, _ :=`), so a bad link is "no".
        try:
            return self._manifest_exists(repository, digest)
        except _Abort:
            return False

    def _collect_layer_links(self, repository: str) -> None:
        base = f"{layout.repository_dir(repository)}/{layout.LAYERS_DIR}"
        if self.tree.list_sorted(base) is None:
            raise _Abort(f"Path not found: {base}", base)
        for link in self.tree.link_files(base):
            try:
                digest = golang.parse_link(link.raw)
            except golang.GoError as exc:
                raise _Abort(str(exc), link.path) from None
            if not self._blob_exists(repository, digest):
                continue
            if digest not in self.out.marked:
                self.out.layer_links.append((repository, digest))

    # --- sweep ----------------------------------------------------------------------------

    def sweep(self) -> None:
        pending = self.pending
        if self.version == 3:
            pending = [m for m in pending if m.digest not in self.out.marked]
        self.out.manifests = pending
        for digest in self.tree.blob_digests():
            if digest in self.out.marked:
                continue
            if not self._has_data_file(digest):
                continue
            self.out.blobs.add(digest)
        if self.version == 3:
            self._layer_link_twice()

    def _layer_link_twice(self) -> None:
        """v3 lists a repository's layer links by the digest each holds: a blob pushed under
        another algorithm (sha512) has a second link holding the same canonical digest, so
        an unmarked one is listed twice, and the second removal of the same path stops the
        run after the blobs are gone ("failed to delete layer link ... Path not found";
        observed on 3.1.2). Repositories' links are removed in Go map order: which other
        repositories lose theirs before the stop varies; all are listed."""
        seen: set[tuple[str, str]] = set()
        for repository, digest in self.out.layer_links:
            if (repository, digest) in seen and self.out.aborted is None:
                path = layout.layer_link(repository, digest)
                self.out.aborted = (
                    f"failed to delete layer link {digest} of repo {repository}: "
                    f"filesystem: Path not found: /{path}"
                )
                self.out.abort_path = path
            seen.add((repository, digest))
        self.out.layer_links = list(dict.fromkeys(self.out.layer_links))

    def _has_data_file(self, digest: str) -> bool:
        algorithm, _, hex_ = digest.partition(":")
        if layout.is_digest_folder(algorithm, hex_):
            return self.tree.data_state(digest) != MISSING
        # A folder whose name is not a digest: the collector stops on a `data` file in it.
        entries = self.tree.list_sorted(layout.blob_dir(digest)) or []
        if any(e.name == "data" and not e.is_dir for e in entries):
            raise _Abort(
                f"error enumerating blobs: invalid digest {digest}", layout.blob_data(digest)
            )
        return False


def predict(tree: GCTree, version: int, delete_untagged: bool) -> Prediction:
    """Replay `registry garbage-collect [--delete-untagged]` of distribution `version`
    (2 or 3) on `tree`. Never raises for storage faults: an unreadable path is an abort
    (the collector cannot read it either) with `abort_path` set."""
    collector = _Collector(tree, version, delete_untagged)
    try:
        _run(collector)
    finally:
        collector.out.marked_count = len(collector.out.marked)
    return collector.out


def _run(collector: _Collector) -> None:
    try:
        collector.mark()
    except StorageLinkOutsideError as exc:
        _unknown(collector.out, exc)
        return
    except _Abort as exc:
        collector.out.aborted = f"failed to mark: {exc}"
        collector.out.abort_path = exc.path
        collector.out.marked.clear()
        return
    except StorageError as exc:
        collector.out.aborted = f"failed to mark: {exc}"
        collector.out.abort_path = exc.path or None
        return
    try:
        collector.sweep()
    except StorageLinkOutsideError as exc:
        _unknown(collector.out, exc)
    except _Abort as exc:
        collector.out.aborted = str(exc)
        collector.out.abort_path = exc.path
        collector.out.blobs.clear()
    except StorageError as exc:
        collector.out.aborted = f"error enumerating blobs: {exc}"
        collector.out.abort_path = exc.path or None
        collector.out.blobs.clear()


def _unknown(out: Prediction, exc: StorageLinkOutsideError) -> None:
    """shipsure reads nothing through a link leaving the storage root; the collector follows
    it (its driver stats and lists through links). What the run does there is unknown: no
    abort is predicted, and nothing is listed as deleted."""
    out.unknown = str(exc)
    out.unknown_path = exc.link or exc.path or None
    out.manifests, out.blobs, out.layer_links = [], set(), []
    out.marked.clear()
