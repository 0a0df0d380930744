"""Answers from a store in the forms users already use: a table of signal per BED region
(`summarize`), a matrix around reference points (`profile`), browser tracks
(`export`: bigWig, bedGraph), from a store on disk or at an http(s):// or s3:// URL (`source`).

Every query reads through `CoverageSource` and reduces chunk by chunk (`reduce`): each chunk a
query needs is decoded once, whatever the number or order of regions.

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
