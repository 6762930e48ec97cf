"""`mer analyse`: a catalog's emotions as a table (Parquet, CSV, JSON lines), nothing
written to the audio files; on this machine (`local`) or on a Ray cluster (`ray_engine`).

    from mer_plugin.catalog import analyse_to_table
    analyse_to_table([Path("~/Music").expanduser()], Path("moods.parquet"), model)
"""

from mer_plugin.catalog.local import AnalyseRun, analyse_to_table
from mer_plugin.catalog.table import COLUMNS, FORMATS, TableError, read_rows

__all__ = ["COLUMNS", "FORMATS", "AnalyseRun", "TableError", "analyse_to_table", "read_rows"]
