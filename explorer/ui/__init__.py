"""The only Streamlit glue in the library: shared state, cached analyses, widgets, formatting, sidebar.

Pages import from here; nothing else under ``explorer`` imports streamlit.
"""
from .composition import (DEFAULT_SPEC, cached_diagram, cached_spec_analysis, cached_stages, current_spec, init_spec,
                          set_spec, spec_arrived)
from .diagram import architecture_diagram
from .format import fmt_bytes, fmt_count, fmt_int, fmt_num, fmt_pair, fmt_rf, fmt_shape, md_escape
from .lecture_notes import slide_notes
from .sidebar import sidebar_summary
from .state import (DEFAULT_MODEL, DTYPES, MAX_SIDE, MIN_SIDE, Selection, cached_analysis, current_selection,
                    init_selection, layers_source, parse_query, query_params_for, set_layers_source, set_selection,
                    seed_widget, sync_query_params, sync_url, LAYERS_SOURCES)
from .tables import LAYER_EXTRAS, LAYER_EXTRAS_DEFAULT, layer_table, level_rows, part_rows, stage_frame, stage_table
from .widgets import dtype_picker, model_label, model_picker, side_input, input_fix_buttons, upload_mb

__all__ = [
    "architecture_diagram",
    "DEFAULT_SPEC", "cached_diagram", "cached_spec_analysis", "cached_stages", "current_spec", "init_spec", "set_spec",
    "spec_arrived", "sync_url", "layers_source", "set_layers_source", "LAYERS_SOURCES", "seed_widget",
    "fmt_bytes", "fmt_count", "fmt_int", "fmt_num", "fmt_pair", "fmt_rf", "fmt_shape", "md_escape",
    "slide_notes", "sidebar_summary",
    "DEFAULT_MODEL", "DTYPES", "MAX_SIDE", "MIN_SIDE", "Selection", "cached_analysis", "current_selection",
    "init_selection", "parse_query", "query_params_for", "set_selection", "sync_query_params",
    "LAYER_EXTRAS", "LAYER_EXTRAS_DEFAULT", "layer_table", "level_rows", "part_rows", "stage_frame", "stage_table",
    "dtype_picker", "model_label", "model_picker", "side_input", "input_fix_buttons", "upload_mb",
]
