"""Generated from proto/switchboard/v1 by clients/gen.sh (grpcio-tools). Do not edit."""
