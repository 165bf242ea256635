"""`edgesel models import`: catalog entries from a CSV file, an AI Hub style model suite or ONNX files.

sources.py turns a source into candidates, rows.py checks them against the space's schema, diff.py compares
them with the live catalog; aihub.py is the one parser of qai-hub-models' YAML files (also used by
scripts/derive_aihub_scenario.py). PyYAML (--aihub) and onnx (--onnx) are optional extras, imported only
when used: the SDK itself needs grpcio and protobuf only.
"""
