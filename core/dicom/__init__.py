"""DICOM helpers shared by every app that serves or sends DIMSE."""
