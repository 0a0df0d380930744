"""Answers from a store in the forms users already use: a table of signal per BED region
(`summarize`), a matrix around reference points (`profile`), browser tracks
(`export`: bigWig, bedGraph), from a store on disk or at an http(s):// or s3:// URL (`source`).

Every query reads through `CoverageSource`, whose block reader (`chunks`, `_chunkread`) decodes
only the blosc blocks a query touches; reductions (`reduce`) fold them on the decoded integers,
each block once for intervals sorted by position, whatever their number.

Queries return data; drawing it (`bamstore.plot`, e.g. the heatmap of a profile) is a layer
above, and nothing here imports it or the Python API.
"""

from bamstore.query.blacklist import Blacklist
from bamstore.query.export import ExportResult, export_track, export_tracks
from bamstore.query.profile import Profile, profile
from bamstore.query.source import CoverageSource, is_url, open_group
from bamstore.query.summarize import STATS, Summary, summarize, summarize_frame, write_tsv

__all__ = [
    "STATS",
    "Blacklist",
    "CoverageSource",
    "ExportResult",
    "Profile",
    "Summary",
    "export_track",
    "export_tracks",
    "is_url",
    "open_group",
    "profile",
    "summarize",
    "summarize_frame",
    "write_tsv",
]
