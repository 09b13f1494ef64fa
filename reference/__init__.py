"""An independent re-implementation of RVC's UVR5 VR pipeline, for the tests and benchmarks only (not installed)."""
