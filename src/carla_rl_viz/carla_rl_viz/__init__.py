"""Seeing the stack: rviz2 markers and TF, Foxglove streaming, a live browser view and episode videos."""
