"""Visualisations as arrays and data frames (no streamlit): receptive-field curves, tables, boxes, heatmaps."""
from .receptive_field import (SAMPLE_IMAGES, center_crop, default_stage, effective_rf, output_size, read_image,
                              rf_warnings, sample_images, spatial_stages, stage_table, theoretical_box,
                              to_input, unit_centre, unit_size, field_sentence)

__all__ = ["SAMPLE_IMAGES", "center_crop", "default_stage", "effective_rf", "output_size", "read_image",
           "rf_warnings", "sample_images", "spatial_stages", "stage_table", "theoretical_box",
           "to_input", "unit_centre", "unit_size", "field_sentence"]
