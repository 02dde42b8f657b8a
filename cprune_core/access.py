"""Whom a call works for: one policy object, ``Access``, that the core's calls take and whoever calls them chooses.

The core decides nothing about who is asking. The command line runs as the machine's own user
(``COMMAND_LINE``: any folder, downloads allowed, records shared). The app's server side builds one
``Access`` per visitor from its own settings (``cprune_server.visitor_access``) and passes it down: a
run, an analysis or an atlas then reads datasets only inside ``data_roots``, downloads only when
``downloads`` says so, and records its results as ``owner``'s, and a listing of runs shows only what
that owner ``sees``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Access", "COMMAND_LINE", "NO_DOWNLOADS"]

# Why a download was refused, or is not offered, under an Access whose downloads are off (the app's visitors, when
# the server is set so).
NO_DOWNLOADS = "This server downloads nothing on a visitor's behalf"


@dataclass(frozen=True)
class Access:
    """What one caller may do.

    Attributes
    ----------
    data_roots : the folders datasets may be read from, resolved (links followed); a dataset folder outside
        them is refused with one sentence that tells nothing about it (``data.confine``), and so is an image
        whose real path leads out of them. None: any folder (the command line).
    downloads : whether weights and datasets missing from the caches may be downloaded.
    owner : whose runs and records these are, an opaque id (the app: one per browser); None: the command
        line's, shared with everyone.

    Example: ``Access(data_roots=(Path("/srv/data"),), downloads=False, owner="a1b2")`` is a visitor of a
    server that downloads nothing; ``COMMAND_LINE`` is ``Access()``.
    """

    data_roots: tuple[Path, ...] | None = None
    downloads: bool = True
    owner: str | None = None

    @property
    def confined(self) -> bool:
        """Whether datasets are confined to ``data_roots``."""
        return self.data_roots is not None

    def sees(self, owner: str | None) -> bool:
        """Whether a record of ``owner`` is visible under this access: every record for the command line
        (``owner`` None here); the shared ones (no owner) and one's own for an owner."""
        return self.owner is None or owner is None or owner == self.owner


COMMAND_LINE = Access()
